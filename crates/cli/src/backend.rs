//! Backend selection: the one place that knows which backends exist (DESIGN.md §3).

use clap::ValueEnum;

#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum BackendChoice {
    /// A real GPU when one exists, otherwise the CPU. (No GPU backend is built yet.)
    #[default]
    Auto,
    Cpu,
}

pub fn cpu(choice: BackendChoice) -> ingot_backend_cpu::CpuBackend {
    match choice {
        BackendChoice::Auto | BackendChoice::Cpu => ingot_backend_cpu::CpuBackend::new(),
    }
}
