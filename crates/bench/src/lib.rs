//! `ingot bench serve`: a serving benchmark for any OpenAI-compatible server, in the manner
//! of vLLM's `vllm bench serve`, so figures from both read the same way.
//!
//! It drives the server with streaming requests (`load`: a fixed number in flight, or
//! Poisson arrivals), times each one chunk by chunk (`http`, `sse`), reduces the timings to
//! TTFT / TPOT / ITL / end-to-end distributions and throughputs (`stats`), prints them, and
//! writes everything to JSON and PNG (`report`, `plot`). Synthetic prompts have an exact
//! token length counted by the server's own tokenizer (`prompts`), so runs against
//! different servers on the same vocabulary do the same work.
//!
//! Each point of a sweep (`--concurrency 1,4,16,64`) sends fresh prompts, so a server's
//! prefix cache cannot carry work from one point to the next. A run always ends: after its
//! prompts, or at `--max-duration`.

pub mod http;
pub mod load;
pub mod plot;
pub mod prompts;
pub mod report;
pub mod sse;
pub mod stats;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use hyper::{Method, StatusCode};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Map, Value};

use crate::http::{Endpoint, HttpClient};
use crate::load::{Job, Load};
use crate::prompts::{Counter, Prompt, TokenCounter};
use crate::report::{BenchReport, RunReport};

/// The arguments of `ingot bench serve`.
#[derive(clap::Parser, Clone, Debug)]
#[command(name = "serve")]
pub struct ServeBenchArgs {
    /// Base URL of the server, e.g. http://127.0.0.1:8000 (plain HTTP).
    #[arg(long, required_unless_present = "from_json")]
    pub url: Option<String>,
    /// Model name to request (default: the first one /v1/models lists).
    #[arg(long)]
    pub model: Option<String>,
    /// Which API to drive.
    #[arg(long, value_enum, default_value = "completions")]
    pub endpoint: Endpoint,
    /// Requests per run (per point of a sweep).
    #[arg(long, default_value_t = 100)]
    pub num_prompts: usize,
    /// Keep this many requests in flight; a comma-separated list runs a sweep.
    #[arg(long, value_delimiter = ',', conflicts_with = "request_rate")]
    pub concurrency: Vec<usize>,
    /// Poisson arrivals at this many requests/s ("inf": all at once, the default); a list sweeps.
    #[arg(long, value_delimiter = ',')]
    pub request_rate: Vec<f64>,
    /// Prompt length in tokens, counted with the server's tokenizer.
    #[arg(long, default_value_t = 1024, conflicts_with = "dataset")]
    pub input_len: usize,
    /// Tokens to generate per request (a dataset line's `output_len` wins).
    #[arg(long, default_value_t = 128)]
    pub output_len: usize,
    /// JSONL prompts instead of synthetic ones: {"prompt": "...", "output_len": N} per line.
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Seeds the synthetic prompts and the arrival times.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Sent as `Authorization: Bearer KEY`.
    #[arg(long)]
    pub api_key: Option<String>,
    /// Count prompt tokens with this server's tokenize endpoint instead of --url's: one
    /// replica's URL when --url is a router that does not forward /tokenize (vllm-router).
    #[arg(long)]
    pub tokenizer_url: Option<String>,
    /// Write every setting, request and summary here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Draw throughput and latency against concurrency (or rate) into this PNG.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Stop each run after this many seconds: unsent requests are dropped, those in flight cancelled.
    #[arg(long)]
    pub max_duration: Option<f64>,
    /// Ask the server to generate exactly the requested tokens (vLLM's `ignore_eos`).
    #[arg(long)]
    pub ignore_eos: bool,
    /// A JSON object merged into every request body, e.g. '{"top_k": 1}'.
    #[arg(long)]
    pub extra_body: Option<String>,
    /// In a concurrency sweep, send at least this many requests per client at each point
    /// (a run sends max(--num-prompts, K × C)).
    #[arg(long)]
    pub prompts_per_client: Option<usize>,
    /// Names this server in tables and plots (default: the URL).
    #[arg(long)]
    pub label: Option<String>,
    /// Run nothing: read these --json reports, print them as one table, and --plot them together.
    #[arg(long, num_args = 1.., conflicts_with = "url")]
    pub from_json: Vec<PathBuf>,
}

impl ServeBenchArgs {
    fn check(&self) -> Result<()> {
        if self.num_prompts == 0 {
            bail!("--num-prompts must be at least 1");
        }
        if self.output_len == 0 {
            bail!("--output-len must be at least 1");
        }
        if self.concurrency.contains(&0) {
            bail!("--concurrency values must be at least 1");
        }
        if let Some(r) = self.request_rate.iter().find(|r| r.is_nan() || **r <= 0.0) {
            bail!("--request-rate values must be positive (or inf), got {r}");
        }
        if self.max_duration.is_some_and(|d| d.is_nan() || d <= 0.0) {
            bail!("--max-duration must be positive");
        }
        Ok(())
    }

    /// The loads of the sweep, in the order given.
    pub fn loads(&self) -> Vec<Load> {
        if !self.concurrency.is_empty() {
            self.concurrency
                .iter()
                .map(|&c| Load::Concurrency(c))
                .collect()
        } else if !self.request_rate.is_empty() {
            self.request_rate.iter().map(|&r| Load::Rate(r)).collect()
        } else {
            vec![Load::Rate(f64::INFINITY)]
        }
    }

    fn extra(&self) -> Result<Map<String, Value>> {
        match &self.extra_body {
            None => Ok(Map::new()),
            Some(s) => match serde_json::from_str(s).context("--extra-body is not JSON")? {
                Value::Object(m) => Ok(m),
                _ => bail!("--extra-body must be a JSON object"),
            },
        }
    }
}

/// The model to request: `--model`, else the first of `/v1/models`.
async fn resolve_model(client: &HttpClient, given: Option<&str>) -> Result<String> {
    if let Some(m) = given {
        return Ok(m.to_string());
    }
    let r = client.call(Method::GET, "/v1/models", None).await?;
    if r.status != StatusCode::OK {
        bail!(
            "GET /v1/models: HTTP {} ({}); name the model with --model",
            r.status,
            r.text.trim()
        );
    }
    r.body["data"][0]["id"]
        .as_str()
        .map(str::to_string)
        .context("GET /v1/models listed no model; name it with --model")
}

/// Runs the whole sweep against `args.url`, printing a summary after each run.
pub async fn benchmark(args: &ServeBenchArgs) -> Result<BenchReport> {
    args.check()?;
    let url = args.url.as_deref().context("--url is required")?;
    let client = HttpClient::new(url, args.api_key.clone())?;
    let model = resolve_model(&client, args.model.as_deref()).await?;
    let extra = args.extra()?;
    let (tok_url, tok_client) = match &args.tokenizer_url {
        Some(u) => (u.as_str(), HttpClient::new(u, args.api_key.clone())?),
        None => (url, client.clone()),
    };
    let counter =
        Counter::detect(&tok_client, &model, args.endpoint == Endpoint::Completions).await;
    if counter.kind == TokenCounter::Estimate {
        eprintln!(
            "warning: {tok_url} has no tokenize endpoint; prompt lengths are estimated at {} words per token, not exact",
            prompts::WORDS_PER_TOKEN
        );
    }
    let dataset = match &args.dataset {
        Some(p) => Some(prompts::read_dataset(p)?),
        None => None,
    };
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut runs = Vec::new();
    let mut offset = 0;
    for (i, load) in args.loads().into_iter().enumerate() {
        let n = match (load, args.prompts_per_client) {
            (Load::Concurrency(c), Some(k)) => args.num_prompts.max(k * c),
            _ => args.num_prompts,
        };
        let seed = args.seed.wrapping_add(i as u64);
        let spinner = ProgressBar::new_spinner().with_message(format!("building {n} prompts"));
        spinner.enable_steady_tick(Duration::from_millis(200));
        let prompts = match &dataset {
            Some(lines) => {
                prompts::from_dataset(&counter, lines, n, offset, args.output_len).await?
            }
            None => prompts::synthetic(&counter, n, args.input_len, args.output_len, seed).await?,
        };
        spinner.finish_and_clear();
        offset += n;
        if dataset.is_none()
            && let Some(p) = prompts.iter().find(|p| p.tokens != args.input_len)
        {
            eprintln!(
                "warning: a prompt came out at {} tokens, not {}",
                p.tokens, args.input_len
            );
        }
        let jobs = prompts
            .iter()
            .map(|p: &Prompt| Job {
                body: load::request_body(args.endpoint, &model, p, args.ignore_eos, &extra),
                prompt_tokens: p.tokens,
                max_tokens: p.output_len,
            })
            .collect();
        let bar = ProgressBar::new(n as u64).with_message(describe(load));
        bar.set_style(
            ProgressStyle::with_template("{msg:>16} {wide_bar} {pos}/{len} requests [{elapsed}]")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let out = load::run(
            &client,
            args.endpoint,
            jobs,
            load,
            args.max_duration.map(Duration::from_secs_f64),
            seed,
            &bar,
        )
        .await;
        bar.finish_and_clear();
        let (concurrency, request_rate) = match load {
            Load::Concurrency(c) => (Some(c), None),
            Load::Rate(r) => (None, r.is_finite().then_some(r)),
        };
        let run = RunReport {
            concurrency,
            request_rate,
            num_prompts: n,
            max_in_flight: out.max_in_flight,
            summary: stats::summarize(&out.results, out.duration_s),
            requests: out.results,
        };
        if let Some(e) = run.requests.iter().find_map(|r| match &r.outcome {
            stats::Outcome::Error(e) => Some(e),
            _ => None,
        }) {
            eprintln!(
                "warning: {} request(s) failed; the first: {e}",
                run.summary.failed
            );
        }
        print!("{}", report::summary_block(&run));
        runs.push(run);
    }
    Ok(BenchReport {
        label: args
            .label
            .clone()
            .unwrap_or_else(|| client.base().to_string()),
        url: client.base().to_string(),
        model,
        endpoint: args.endpoint,
        started_unix,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        token_counter: counter.kind,
        dataset: args.dataset.as_ref().map(|p| p.display().to_string()),
        input_len: args.dataset.is_none().then_some(args.input_len),
        output_len: args.output_len,
        seed: args.seed,
        ignore_eos: args.ignore_eos,
        max_duration_s: args.max_duration,
        runs,
    })
}

fn describe(load: Load) -> String {
    match load {
        Load::Concurrency(c) => format!("concurrency {c}"),
        Load::Rate(r) if r.is_infinite() => "all at once".to_string(),
        Load::Rate(r) => format!("{r} req/s"),
    }
}

/// `ingot bench serve`: runs the benchmark (or reads `--from-json` reports), prints the
/// table, and writes `--json` and `--plot`.
pub fn run(args: ServeBenchArgs) -> Result<()> {
    let reports = if args.from_json.is_empty() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let report = runtime.block_on(benchmark(&args))?;
        if let Some(path) = &args.json {
            report.write(path)?;
        }
        vec![report]
    } else {
        args.from_json
            .iter()
            .map(|p| BenchReport::read(p))
            .collect::<Result<_>>()?
    };
    println!("{}", report::markdown_table(&reports));
    if let Some(path) = &args.plot {
        plot::draw(&reports, path)?;
        eprintln!("plot written to {}", path.display());
    }
    Ok(())
}
