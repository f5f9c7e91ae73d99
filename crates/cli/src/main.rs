//! The `ingot` binary. Subcommands live in their own modules; this file parses arguments,
//! sets up logging (stderr, `RUST_LOG`), and reports errors as one clear message.

mod backend;
mod bench;
mod devices;
mod generate;
mod serve;
mod setup;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "ingot", version, about = "LLM inference and serving engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text for one prompt and stream it to stdout.
    Generate(generate::GenerateArgs),
    /// Serve the OpenAI-compatible HTTP API (chat, completions, models, metrics).
    Serve(serve::ServeArgs),
    /// Offline engine benchmarks (batched throughput, prefix-cache TTFT).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// List the GPU adapters with the index and name `--device` takes.
    Devices,
}

fn main() -> std::process::ExitCode {
    // Colour codes only where a person reads the log on a terminal, never in files or pipes.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate(args) => generate::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Devices => devices::run(),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
