//! What a benchmark writes: the JSON report (settings, every request's timings, each run's
//! summary), the vLLM-style text block printed after each run, and a markdown table that
//! puts runs (of one or several servers) side by side.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::http::Endpoint;
use crate::prompts::TokenCounter;
use crate::stats::{Distribution, RequestResult, Summary};

/// A whole `ingot bench serve` invocation against one server.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchReport {
    /// Names the server in tables and plot legends (`--label`, else the URL).
    pub label: String,
    pub url: String,
    pub model: String,
    pub endpoint: Endpoint,
    /// Seconds since the Unix epoch when the benchmark started.
    pub started_unix: u64,
    /// The command line, as given.
    pub command: String,
    /// How prompt lengths were counted.
    pub token_counter: TokenCounter,
    pub dataset: Option<String>,
    /// Target prompt length (synthetic prompts).
    pub input_len: Option<usize>,
    pub output_len: usize,
    pub seed: u64,
    pub ignore_eos: bool,
    pub max_duration_s: Option<f64>,
    pub runs: Vec<RunReport>,
}

/// One point of a sweep: one concurrency or one request rate.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunReport {
    /// Requests kept in flight, for `--concurrency` runs.
    pub concurrency: Option<usize>,
    /// Poisson arrival rate (req/s), for `--request-rate` runs; None with `concurrency` None
    /// means every request was sent at once.
    pub request_rate: Option<f64>,
    /// Prompts the run had to send.
    pub num_prompts: usize,
    pub max_in_flight: usize,
    pub summary: Summary,
    pub requests: Vec<RequestResult>,
}

impl RunReport {
    /// "concurrency 4", "rate 2 req/s" or "all at once".
    pub fn load_name(&self) -> String {
        match (self.concurrency, self.request_rate) {
            (Some(c), _) => format!("concurrency {c}"),
            (None, Some(r)) => format!("rate {r} req/s"),
            (None, None) => "all at once".to_string(),
        }
    }
}

impl BenchReport {
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }

    pub fn read(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| {
            format!(
                "{}: not an `ingot bench serve --json` report",
                path.display()
            )
        })
    }
}

/// The text block printed after a run, laid out like vLLM's.
pub fn summary_block(run: &RunReport) -> String {
    let s = &run.summary;
    let mut out = String::new();
    let mut line = |name: &str, value: String| {
        let _ = writeln!(out, "{:<40} {value}", format!("{name}:"));
    };
    let title = |t: &str| format!("{t:-^50}");
    line("Load", run.load_name());
    line("Successful requests", s.completed.to_string());
    if s.failed > 0 {
        line("Failed requests", s.failed.to_string());
    }
    if s.aborted > 0 {
        line("Aborted at --max-duration", s.aborted.to_string());
    }
    line("Benchmark duration (s)", format!("{:.2}", s.duration_s));
    line("Total input tokens", s.total_input_tokens.to_string());
    line("Total generated tokens", s.total_output_tokens.to_string());
    line(
        "Request throughput (req/s)",
        format!("{:.2}", s.request_throughput),
    );
    line(
        "Output token throughput (tok/s)",
        format!("{:.2}", s.output_throughput),
    );
    line(
        "Total token throughput (tok/s)",
        format!("{:.2}", s.total_token_throughput),
    );
    line("Max requests in flight", run.max_in_flight.to_string());
    let mut text = format!("{:=^50}\n{out}", " Serving Benchmark Result ");
    for (t, short, d) in [
        ("Time to First Token", "TTFT", &s.ttft_ms),
        (
            "Time per Output Token (excl. 1st token)",
            "TPOT",
            &s.tpot_ms,
        ),
        ("Inter-token Latency", "ITL", &s.itl_ms),
        ("End-to-end Latency", "E2EL", &s.e2e_ms),
    ] {
        let _ = writeln!(text, "{}", title(t));
        for (stat, v) in stat_rows(d) {
            let _ = writeln!(text, "{:<40} {v}", format!("{stat} {short} (ms):"));
        }
    }
    let _ = writeln!(text, "{}", "=".repeat(50));
    text
}

fn stat_rows(d: &Option<Distribution>) -> [(&'static str, String); 4] {
    let f = |x: Option<f64>| x.map_or("n/a".to_string(), |v| format!("{v:.2}"));
    [
        ("Mean", f(d.map(|d| d.mean))),
        ("Median", f(d.map(|d| d.median))),
        ("P90", f(d.map(|d| d.p90))),
        ("P99", f(d.map(|d| d.p99))),
    ]
}

/// Every run of every report as one markdown table.
pub fn markdown_table(reports: &[BenchReport]) -> String {
    let mut t = String::from(
        "| server | load | ok/sent | duration s | req/s | output tok/s | total tok/s | TTFT median / p99 ms | TPOT median / p99 ms | ITL median / p99 ms | e2e median / p99 s |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let pair = |d: &Option<Distribution>, scale: f64| {
        d.map_or("n/a".to_string(), |d| {
            format!("{:.1} / {:.1}", d.median * scale, d.p99 * scale)
        })
    };
    for r in reports {
        for run in &r.runs {
            let s = &run.summary;
            let _ = writeln!(
                t,
                "| {} | {} | {}/{} | {:.1} | {:.2} | {:.1} | {:.1} | {} | {} | {} | {} |",
                r.label,
                run.load_name(),
                s.completed,
                run.requests.len(),
                s.duration_s,
                s.request_throughput,
                s.output_throughput,
                s.total_token_throughput,
                pair(&s.ttft_ms, 1.0),
                pair(&s.tpot_ms, 1.0),
                pair(&s.itl_ms, 1.0),
                pair(&s.e2e_ms, 1e-3),
            );
        }
    }
    t
}
