//! Which adapter the GPU backend opens: the list wgpu enumerates on the native backends
//! (Vulkan, Metal, DX12), numbered in enumeration order, and the rule that turns a user's
//! choice (`--device N|NAME`) or none into one adapter.
//!
//! Without a choice the best adapter wins: a discrete GPU, then an integrated one, then a
//! virtual one (the first listed among equals); a CPU/software adapter (lavapipe, WARP) only
//! when software is allowed. A choice names one adapter by its index in [`list`] or by its
//! name (case-insensitive: an exact name, else a part of exactly one name). A named adapter
//! is opened even when it is a software one, since the user asked for it. Indices follow the driver's order, which
//! is stable on one machine but may differ from `nvidia-smi`'s: `ingot devices` shows them.
//! Several GPUs of one model share a name, so there the index is the way to pick one (one
//! replica per GPU, each with its own `--device`).

/// The user's choice of adapter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AdapterChoice {
    /// The best adapter by the rule in the module header.
    #[default]
    Best,
    /// The adapter at this index of [`list`].
    Index(usize),
    /// The adapter whose name is this, or contains it (one only).
    Name(String),
}

impl AdapterChoice {
    /// `"2"` is an index, anything else a name; empty is the best adapter.
    pub fn parse(s: &str) -> Self {
        let s = s.trim();
        if s.is_empty() {
            AdapterChoice::Best
        } else if let Ok(i) = s.parse::<usize>() {
            AdapterChoice::Index(i)
        } else {
            AdapterChoice::Name(s.to_string())
        }
    }
}

/// One adapter as `ingot devices` prints it.
#[derive(Clone, Debug)]
pub struct AdapterEntry {
    /// Position in enumeration order: what `--device N` names.
    pub index: usize,
    pub name: String,
    pub backend: wgpu::Backend,
    pub device_type: wgpu::DeviceType,
    /// Driver name and version, as the driver reports them.
    pub driver: String,
}

impl AdapterEntry {
    fn of(index: usize, adapter: &wgpu::Adapter) -> Self {
        let info = adapter.get_info();
        AdapterEntry {
            index,
            name: info.name,
            backend: info.backend,
            device_type: info.device_type,
            driver: format!("{} {}", info.driver, info.driver_info)
                .trim()
                .to_string(),
        }
    }

    /// Whether this is a CPU/software rasterizer rather than a GPU.
    pub fn is_software(&self) -> bool {
        is_software(self.device_type)
    }
}

pub(crate) fn native_backends() -> wgpu::Backends {
    wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12
}

pub(crate) fn new_instance() -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = native_backends();
    wgpu::Instance::new(desc)
}

fn enumerate(instance: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    pollster::block_on(instance.enumerate_adapters(native_backends()))
}

/// Every adapter on the native backends, numbered as `--device` numbers them.
pub fn list() -> Vec<AdapterEntry> {
    enumerate(&new_instance())
        .iter()
        .enumerate()
        .map(|(i, a)| AdapterEntry::of(i, a))
        .collect()
}

fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 4,
        wgpu::DeviceType::IntegratedGpu => 3,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 1,
        wgpu::DeviceType::Cpu => 0,
    }
}

fn is_software(t: wgpu::DeviceType) -> bool {
    matches!(t, wgpu::DeviceType::Cpu)
}

/// The adapter `choice` names, or why there is none. `allow_software` matters only for
/// [`AdapterChoice::Best`].
pub(crate) fn pick(
    instance: &wgpu::Instance,
    choice: &AdapterChoice,
    allow_software: bool,
) -> Result<wgpu::Adapter, String> {
    let adapters = enumerate(instance);
    let entries: Vec<AdapterEntry> = adapters
        .iter()
        .enumerate()
        .map(|(i, a)| AdapterEntry::of(i, a))
        .collect();
    let index = choose(&entries, choice, allow_software)?;
    Ok(adapters
        .into_iter()
        .nth(index)
        .expect("choose returns an index of the list"))
}

/// The rule of the module header over an adapter list: the index in `entries` to open.
fn choose(
    entries: &[AdapterEntry],
    choice: &AdapterChoice,
    allow_software: bool,
) -> Result<usize, String> {
    match choice {
        AdapterChoice::Best => entries
            .iter()
            .filter(|e| allow_software || !e.is_software())
            .max_by_key(|e| (rank(e.device_type), std::cmp::Reverse(e.index)))
            .map(|e| e.index)
            .ok_or_else(|| {
                if allow_software || entries.is_empty() {
                    "no GPU adapter found (Vulkan, Metal or DX12)".to_string()
                } else {
                    "no GPU adapter found (Vulkan, Metal or DX12); software adapters such as \
                     lavapipe are used only with INGOT_WGPU_ALLOW_SOFTWARE=1 or when named \
                     with --device"
                        .to_string()
                }
            }),
        AdapterChoice::Index(i) => entries
            .iter()
            .find(|e| e.index == *i)
            .map(|e| e.index)
            .ok_or_else(|| format!("--device {i}: no such adapter; {}", describe(entries))),
        AdapterChoice::Name(name) => {
            let wanted = name.to_lowercase();
            let exact: Vec<&AdapterEntry> = entries
                .iter()
                .filter(|e| e.name.to_lowercase() == wanted)
                .collect();
            let matches = if exact.is_empty() {
                entries
                    .iter()
                    .filter(|e| e.name.to_lowercase().contains(&wanted))
                    .collect()
            } else {
                exact
            };
            match matches.as_slice() {
                [one] => Ok(one.index),
                [] => Err(format!(
                    "--device {name:?}: no adapter has that name; {}",
                    describe(entries)
                )),
                many => Err(format!(
                    "--device {name:?} matches {} adapters ({}); name one exactly or give its \
                     index",
                    many.len(),
                    many.iter()
                        .map(|e| format!("{} {}", e.index, e.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
        }
    }
}

/// "the adapters are: 0 NAME (Vulkan, Cpu), ..." for error messages.
fn describe(entries: &[AdapterEntry]) -> String {
    if entries.is_empty() {
        return "there is no adapter (Vulkan, Metal or DX12) on this machine".to_string();
    }
    let all: Vec<String> = entries
        .iter()
        .map(|e| {
            format!(
                "{} {} ({:?}, {:?})",
                e.index, e.name, e.backend, e.device_type
            )
        })
        .collect();
    format!("the adapters are: {} (see `ingot devices`)", all.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: usize, name: &str, device_type: wgpu::DeviceType) -> AdapterEntry {
        AdapterEntry {
            index,
            name: name.to_string(),
            backend: wgpu::Backend::Vulkan,
            device_type,
            driver: String::new(),
        }
    }

    fn machine() -> Vec<AdapterEntry> {
        vec![
            entry(0, "llvmpipe (LLVM 19.1.7, 256 bits)", wgpu::DeviceType::Cpu),
            entry(1, "NVIDIA H200", wgpu::DeviceType::DiscreteGpu),
            entry(2, "NVIDIA H200", wgpu::DeviceType::DiscreteGpu),
            entry(
                3,
                "Intel(R) UHD Graphics 770",
                wgpu::DeviceType::IntegratedGpu,
            ),
        ]
    }

    #[test]
    fn choices_parse_as_index_or_name() {
        assert_eq!(AdapterChoice::parse("2"), AdapterChoice::Index(2));
        assert_eq!(AdapterChoice::parse(" 0 "), AdapterChoice::Index(0));
        assert_eq!(AdapterChoice::parse(""), AdapterChoice::Best);
        assert_eq!(
            AdapterChoice::parse("llvmpipe"),
            AdapterChoice::Name("llvmpipe".into())
        );
    }

    #[test]
    fn best_prefers_discrete_and_skips_software_unless_allowed() {
        let m = machine();
        assert_eq!(choose(&m, &AdapterChoice::Best, false), Ok(1));
        let soft = &m[..1];
        assert_eq!(choose(soft, &AdapterChoice::Best, true), Ok(0));
        let err = choose(soft, &AdapterChoice::Best, false).unwrap_err();
        assert!(err.contains("INGOT_WGPU_ALLOW_SOFTWARE"), "{err}");
        assert!(choose(&[], &AdapterChoice::Best, true).is_err());
    }

    #[test]
    fn an_index_picks_that_adapter_even_a_software_one() {
        let m = machine();
        assert_eq!(choose(&m, &AdapterChoice::Index(2), false), Ok(2));
        assert_eq!(choose(&m, &AdapterChoice::Index(0), false), Ok(0));
        let err = choose(&m, &AdapterChoice::Index(4), false).unwrap_err();
        assert!(err.contains("--device 4: no such adapter"), "{err}");
        assert!(err.contains("3 Intel(R) UHD Graphics 770"), "{err}");
    }

    #[test]
    fn a_name_matches_exactly_or_as_a_unique_part() {
        let m = machine();
        let by = |s: &str| choose(&m, &AdapterChoice::Name(s.into()), false);
        assert_eq!(by("llvmpipe (LLVM 19.1.7, 256 bits)"), Ok(0));
        assert_eq!(by("LLVMPIPE"), Ok(0));
        assert_eq!(by("uhd graphics"), Ok(3));
        let err = by("H200").unwrap_err();
        assert!(err.contains("matches 2 adapters") && err.contains("give its index"));
        let err = by("nvidia h200").unwrap_err();
        assert!(err.contains("1 NVIDIA H200, 2 NVIDIA H200"), "{err}");
        let err = by("radeon").unwrap_err();
        assert!(err.contains("no adapter has that name"), "{err}");
        assert!(err.contains("0 llvmpipe"), "{err}");
    }
}
