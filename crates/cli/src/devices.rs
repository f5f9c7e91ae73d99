//! `ingot devices`: the GPU adapters wgpu finds (Vulkan, Metal, DX12), one line each, with
//! the index and name that `--device` takes. Several replicas on one host each take one
//! adapter: `ingot serve --device 0 --port 8001`, `ingot serve --device 1 --port 8002`, ...

use anyhow::Result;

#[cfg(feature = "gpu")]
pub fn run() -> Result<()> {
    let adapters = ingot_backend_wgpu::adapters::list();
    if adapters.is_empty() {
        println!("no GPU adapter found (Vulkan, Metal or DX12); `--backend cpu` runs anywhere");
        return Ok(());
    }
    let width = adapters
        .iter()
        .map(|a| a.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!(
        "{:<5}  {:<width$}  {:<7}  {:<14}  driver",
        "index", "name", "backend", "type"
    );
    for a in &adapters {
        let kind = format!("{:?}", a.device_type);
        let kind = if a.is_software() {
            format!("{kind} (software)")
        } else {
            kind
        };
        let backend = format!("{:?}", a.backend);
        println!(
            "{:<5}  {:<width$}  {:<7}  {:<14}  {}",
            a.index, a.name, backend, kind, a.driver
        );
    }
    Ok(())
}

#[cfg(not(feature = "gpu"))]
pub fn run() -> Result<()> {
    println!("this build has no GPU backend (cargo feature `gpu`); `--backend cpu` runs anywhere");
    Ok(())
}
