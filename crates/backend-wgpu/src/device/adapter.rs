//! What the chosen adapter offers, as plain data (the choice itself is `crate::adapters`).
//!
//! [`Capabilities`] is everything a kernel family may base a decision on (features, limits,
//! subgroup sizes, cooperative-matrix configurations), read once from the adapter. The
//! kernels decide from it (e.g. `kernels::matmul_coop::choose`); the device only opens
//! with what it is told to request.

/// What an adapter offers: read once, then passed around as data.
#[derive(Clone, Debug)]
pub struct Capabilities {
    /// Name, backend, device type, driver, subgroup size range.
    pub info: wgpu::AdapterInfo,
    pub features: wgpu::Features,
    pub limits: wgpu::Limits,
    /// Every cooperative-matrix configuration the adapter reports (empty without the
    /// feature): `M x N x K`, A/B type, accumulator type.
    pub coop_configs: Vec<wgpu::CooperativeMatrixProperties>,
}

impl Capabilities {
    pub fn of(adapter: &wgpu::Adapter) -> Self {
        Self {
            info: adapter.get_info(),
            features: adapter.features(),
            limits: adapter.limits(),
            coop_configs: adapter.cooperative_matrix_properties(),
        }
    }
}

/// What was chosen, for logs and test output.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: wgpu::Backend,
    pub device_type: wgpu::DeviceType,
    pub driver: String,
    pub shader_f16: bool,
    pub subgroups: bool,
    pub max_binding_bytes: u64,
    /// Every cooperative-matrix configuration the adapter reports (empty without the
    /// feature): `M x N x K`, A/B type, accumulator type.
    pub coop_configs: Vec<wgpu::CooperativeMatrixProperties>,
    /// The fragment edge of the cooperative-matrix matmul (16 on NVIDIA, 8 on Apple), or
    /// why it is off (see `kernels::matmul_coop::choose`).
    pub coop_matmul: std::result::Result<u32, String>,
}

impl AdapterSummary {
    /// The summary of `caps` with the matmul's cooperative-matrix decision.
    pub fn new(caps: &Capabilities, coop_matmul: std::result::Result<u32, String>) -> Self {
        let info = &caps.info;
        AdapterSummary {
            name: info.name.clone(),
            backend: info.backend,
            device_type: info.device_type,
            driver: format!("{} {}", info.driver, info.driver_info),
            shader_f16: caps.features.contains(wgpu::Features::SHADER_F16),
            subgroups: caps.features.contains(wgpu::Features::SUBGROUP),
            max_binding_bytes: caps.limits.max_storage_buffer_binding_size,
            coop_configs: caps.coop_configs.clone(),
            coop_matmul,
        }
    }
}

impl std::fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let configs: Vec<String> = self
            .coop_configs
            .iter()
            .map(|c| {
                format!(
                    "{}x{}x{} {:?}->{:?}",
                    c.m_size, c.n_size, c.k_size, c.ab_type, c.cr_type
                )
            })
            .collect();
        let matmul = match &self.coop_matmul {
            Ok(f) => format!("{f}x{f} fragments"),
            Err(why) => why.clone(),
        };
        write!(
            f,
            "{} ({:?}, {:?}, driver {}; shader-f16 {}, subgroups {}, max binding {} MiB; \
             cooperative matrices [{}], matmul: {})",
            self.name,
            self.backend,
            self.device_type,
            self.driver,
            self.shader_f16,
            self.subgroups,
            self.max_binding_bytes >> 20,
            configs.join(", "),
            matmul
        )
    }
}
