//! Per-request measurements and the statistics a run reports over them.
//!
//! Definitions follow vLLM's serving benchmark (`calculate_metrics` in vllm/benchmarks/serve.py),
//! so figures from both tools read the same way:
//! - TTFT: from sending the request to the first streamed chunk that carries text.
//! - ITL: the gaps between consecutive text-carrying chunks, pooled over all requests. A
//!   server that puts several tokens in one chunk yields fewer, longer gaps.
//! - TPOT: per request, `(e2e - ttft) / (output_tokens - 1)`, for requests with at least two
//!   output tokens; unlike ITL it does not depend on how tokens were grouped into chunks.
//! - e2e: from sending the request to the end of its stream.
//! - Percentiles interpolate linearly between order statistics (numpy's default), standard
//!   deviation is the population one (`np.std`).
//!
//! Everything is O(n log n) in the number of samples (one sort per distribution).

use serde::{Deserialize, Serialize};

/// Where a request's output token count came from, best first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenSource {
    /// The server's `usage` (the last chunk, with `stream_options.include_usage`).
    #[default]
    Usage,
    /// No usage, but `finish_reason: "length"`: exactly the requested `max_tokens`.
    Length,
    /// No usage: the number of text-carrying chunks (a lower bound).
    Chunks,
}

/// How a request ended.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    #[default]
    Ok,
    /// The server answered with an error or the connection failed.
    Error(String),
    /// Still running when `--max-duration` ran out; cancelled and left out of the statistics.
    Aborted,
}

/// One request's measurements; times in seconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestResult {
    pub outcome: Outcome,
    /// Prompt tokens: the server's usage, else the length the prompt was built to.
    pub prompt_tokens: usize,
    /// Prompt tokens the server found in its prefix cache, when it says.
    pub cached_tokens: Option<usize>,
    pub output_tokens: usize,
    pub output_tokens_source: TokenSource,
    /// When the request was sent, from the start of the run.
    pub start_s: f64,
    /// None when no chunk carried text.
    pub ttft_s: Option<f64>,
    /// Gaps between text-carrying chunks. // [chunks - 1]
    pub itl_s: Vec<f64>,
    pub e2e_s: f64,
    pub finish_reason: Option<String>,
}

impl RequestResult {
    pub fn is_ok(&self) -> bool {
        self.outcome == Outcome::Ok
    }

    /// Time per output token after the first, when there are at least two.
    pub fn tpot_s(&self) -> Option<f64> {
        tpot(self.e2e_s, self.ttft_s?, self.output_tokens)
    }
}

/// `(e2e - ttft) / (output_tokens - 1)`; None below two output tokens.
pub fn tpot(e2e: f64, ttft: f64, output_tokens: usize) -> Option<f64> {
    (output_tokens > 1).then(|| (e2e - ttft) / (output_tokens - 1) as f64)
}

/// Gaps between consecutive timestamps. // [times.len() - 1]
pub fn gaps(times: &[f64]) -> Vec<f64> {
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

/// The `p`-th percentile (0..=100) of ascending `sorted`, interpolating linearly between
/// the two nearest ranks as numpy does. None when empty.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let rank = (p.clamp(0.0, 100.0) / 100.0) * (n - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64))
}

/// Summary of one metric over a run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Distribution {
    pub count: usize,
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub median: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Distribution {
    /// The distribution of `values` multiplied by `scale` (e.g. 1e3 for seconds to ms);
    /// None when there are no values.
    pub fn of(values: impl IntoIterator<Item = f64>, scale: f64) -> Option<Self> {
        let mut v: Vec<f64> = values.into_iter().map(|x| x * scale).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
        let pct = |p| percentile(&v, p).unwrap_or(f64::NAN);
        Some(Self {
            count: v.len(),
            mean,
            std: var.sqrt(),
            min: v[0],
            median: pct(50.0),
            p90: pct(90.0),
            p99: pct(99.0),
            max: v[v.len() - 1],
        })
    }
}

/// The figures of one run (one concurrency or request rate).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub completed: usize,
    pub failed: usize,
    pub aborted: usize,
    pub duration_s: f64,
    /// Over completed requests.
    pub total_input_tokens: usize,
    pub total_output_tokens: usize,
    pub request_throughput: f64,
    pub output_throughput: f64,
    pub total_token_throughput: f64,
    pub ttft_ms: Option<Distribution>,
    pub tpot_ms: Option<Distribution>,
    pub itl_ms: Option<Distribution>,
    pub e2e_ms: Option<Distribution>,
}

/// Figures over the completed requests of a run that lasted `duration_s`.
pub fn summarize(results: &[RequestResult], duration_s: f64) -> Summary {
    let ok: Vec<&RequestResult> = results.iter().filter(|r| r.is_ok()).collect();
    let count = |f: fn(&Outcome) -> bool| results.iter().filter(|r| f(&r.outcome)).count();
    let input: usize = ok.iter().map(|r| r.prompt_tokens).sum();
    let output: usize = ok.iter().map(|r| r.output_tokens).sum();
    let per_s = |x: f64| {
        if duration_s > 0.0 {
            x / duration_s
        } else {
            0.0
        }
    };
    Summary {
        completed: ok.len(),
        failed: count(|o| matches!(o, Outcome::Error(_))),
        aborted: count(|o| *o == Outcome::Aborted),
        duration_s,
        total_input_tokens: input,
        total_output_tokens: output,
        request_throughput: per_s(ok.len() as f64),
        output_throughput: per_s(output as f64),
        total_token_throughput: per_s((input + output) as f64),
        ttft_ms: Distribution::of(ok.iter().filter_map(|r| r.ttft_s), 1e3),
        tpot_ms: Distribution::of(ok.iter().filter_map(|r| r.tpot_s()), 1e3),
        itl_ms: Distribution::of(ok.iter().flat_map(|r| r.itl_s.iter().copied()), 1e3),
        e2e_ms: Distribution::of(ok.iter().map(|r| r.e2e_s), 1e3),
    }
}
