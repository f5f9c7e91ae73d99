//! Prometheus metrics in the text exposition format (version 0.0.4), written by hand: a few
//! gauges and counters read from the engine's [`EngineStats`] at scrape time, and latency
//! histograms the HTTP layer observes per request.
//!
//! Names and meanings follow vLLM's `vllm:*` metrics under the prefix `ingot:`, so dashboards
//! built for vLLM work after a rename: `num_requests_running`/`waiting`, `kv_cache_usage_perc`
//! (a fraction in [0, 1], as vLLM's despite the name), `prefix_cache_queries_total` and
//! `prefix_cache_hits_total` (in tokens), `prompt_tokens_total`, `generation_tokens_total`,
//! `num_preemptions_total`, `request_success_total{finished_reason}`, Ingot's own
//! `structured_output_{steps,rows,mask_seconds}_total` (grammar masks) and
//! `kv_event_batches_total` / `kv_event_batches_dropped_total` (KV events), and histograms of time
//! to first token, inter-token latency (each gap between two outputs of a choice), mean time
//! per output token of a request, end-to-end latency, and prompt and generation lengths.
//!
//! A histogram is a fixed list of upper bounds and one count per bucket (cumulated only when
//! rendered); an observation is a binary search and two adds under one mutex, cheap next to
//! a model step.

use std::fmt::Write;
use std::sync::Mutex;

use ingot_engine::EngineStats;
use ingot_engine::api::FinishReason;

const PREFIX: &str = "ingot:";

/// vLLM's bucket bounds for each latency histogram, in seconds.
const TTFT_BOUNDS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];
const ITL_BOUNDS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
];
const E2E_BOUNDS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
];

/// Cumulative-on-render histogram with fixed upper bounds.
#[derive(Clone, Debug)]
pub struct Histogram {
    bounds: Vec<f64>,
    /// One per bound, plus the +Inf bucket; not cumulative.
    counts: Vec<u64>, // [bounds.len() + 1]
    sum: f64,
    count: u64,
}

impl Histogram {
    pub fn new(bounds: &[f64]) -> Self {
        Self {
            bounds: bounds.to_vec(),
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, v: f64) {
        // Prometheus buckets are `le` (less than or equal).
        let i = self.bounds.partition_point(|&b| b < v);
        self.counts[i] += 1;
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, help: &str, labels: &str) {
        let _ = writeln!(out, "# HELP {PREFIX}{name} {help}");
        let _ = writeln!(out, "# TYPE {PREFIX}{name} histogram");
        let mut acc = 0;
        for (bound, n) in self.bounds.iter().zip(&self.counts) {
            acc += n;
            let _ = writeln!(
                out,
                "{PREFIX}{name}_bucket{{{labels},le=\"{bound:?}\"}} {acc}"
            );
        }
        let _ = writeln!(
            out,
            "{PREFIX}{name}_bucket{{{labels},le=\"+Inf\"}} {}",
            self.count
        );
        let _ = writeln!(out, "{PREFIX}{name}_sum{{{labels}}} {:?}", self.sum);
        let _ = writeln!(out, "{PREFIX}{name}_count{{{labels}}} {}", self.count);
    }
}

/// vLLM's 1-2-5 series up to `max` (for token-count histograms).
fn one_two_five(max: usize) -> Vec<f64> {
    let mut out = Vec::new();
    let mut scale = 1usize;
    loop {
        for m in [1, 2, 5] {
            let v = m * scale;
            if v > max {
                return out;
            }
            out.push(v as f64);
        }
        scale *= 10;
    }
}

/// One finished (or abandoned) request, as the HTTP layer saw it.
#[derive(Clone, Copy, Debug)]
pub struct RequestRecord {
    pub e2e_secs: f64,
    /// Mean seconds per output token after the first; None with fewer than two tokens.
    pub tpot_secs: Option<f64>,
    pub prompt_tokens: usize,
    pub generation_tokens: usize,
    pub finish: FinishReason,
}

struct Recorded {
    ttft: Histogram,
    itl: Histogram,
    tpot: Histogram,
    e2e: Histogram,
    prompt_tokens: Histogram,
    generation_tokens: Histogram,
    /// Requests ended, by reason: stop, length, abort.
    finished: [u64; 3],
}

/// The server's metrics registry.
pub struct Metrics {
    /// `model_name="..."`, escaped, shared by every sample.
    labels: String,
    recorded: Mutex<Recorded>,
}

impl Metrics {
    /// Token-count histograms get 1-2-5 buckets up to `max_model_len`.
    pub fn new(model_name: &str, max_model_len: usize) -> Self {
        let tokens = one_two_five(max_model_len.max(1));
        Self {
            labels: format!("model_name=\"{}\"", escape_label(model_name)),
            recorded: Mutex::new(Recorded {
                ttft: Histogram::new(TTFT_BOUNDS),
                itl: Histogram::new(ITL_BOUNDS),
                tpot: Histogram::new(ITL_BOUNDS),
                e2e: Histogram::new(E2E_BOUNDS),
                prompt_tokens: Histogram::new(&tokens),
                generation_tokens: Histogram::new(&tokens),
                finished: [0; 3],
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.recorded.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn observe_first_token(&self, secs: f64) {
        self.lock().ttft.observe(secs);
    }

    pub fn observe_inter_token(&self, secs: f64) {
        self.lock().itl.observe(secs);
    }

    pub fn observe_request(&self, r: RequestRecord) {
        let mut m = self.lock();
        m.e2e.observe(r.e2e_secs);
        if let Some(t) = r.tpot_secs {
            m.tpot.observe(t);
        }
        m.prompt_tokens.observe(r.prompt_tokens as f64);
        m.generation_tokens.observe(r.generation_tokens as f64);
        let slot = match r.finish {
            FinishReason::Stop => 0,
            FinishReason::Length => 1,
            FinishReason::Abort => 2,
        };
        m.finished[slot] += 1;
    }

    /// The whole exposition, with the engine's gauges and counters as of `stats`.
    pub fn render(&self, stats: &EngineStats) -> String {
        let l = &self.labels;
        let mut out = String::with_capacity(8192);
        let mut sample = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(out, "# HELP {PREFIX}{name} {help}");
            let _ = writeln!(out, "# TYPE {PREFIX}{name} {kind}");
            let _ = writeln!(out, "{PREFIX}{name}{{{l}}} {value}");
        };
        let g = "gauge";
        let c = "counter";
        sample(
            "num_requests_running",
            g,
            "Requests in the running batch.",
            stats.num_running.to_string(),
        );
        sample(
            "num_requests_waiting",
            g,
            "Requests waiting to be scheduled.",
            stats.num_waiting.to_string(),
        );
        sample(
            "kv_cache_usage_perc",
            g,
            "Fraction of KV cache blocks in use (1 = full).",
            format!("{:?}", stats.kv_usage),
        );
        sample(
            "num_kv_cache_blocks",
            g,
            "KV cache blocks of the full-attention layers (of every layer without sliding-window groups).",
            stats.num_blocks.to_string(),
        );
        sample(
            "num_kv_cache_sliding_blocks",
            g,
            "KV cache blocks of the sliding-window layers' groups (0 without them).",
            stats.num_sliding_blocks.to_string(),
        );
        sample(
            "kv_cache_capacity_tokens",
            g,
            "Tokens the full-attention KV cache holds (over all requests).",
            (stats.num_blocks * stats.block_size).to_string(),
        );
        sample(
            "prefix_cache_queries_total",
            c,
            "Prompt tokens looked up in the prefix cache.",
            stats.prefix_cache_queries.to_string(),
        );
        sample(
            "prefix_cache_hits_total",
            c,
            "Prompt tokens found in the prefix cache.",
            stats.prefix_cache_hits.to_string(),
        );
        sample(
            "prompt_tokens_total",
            c,
            "Prompt tokens of admitted requests.",
            stats.prompt_tokens_total.to_string(),
        );
        sample(
            "generation_tokens_total",
            c,
            "Tokens generated.",
            stats.generation_tokens_total.to_string(),
        );
        sample(
            "num_preemptions_total",
            c,
            "Requests preempted to free KV cache blocks.",
            stats.num_preemptions_total.to_string(),
        );
        sample(
            "structured_output_steps_total",
            c,
            "Engine steps with structured-output (grammar-constrained) rows.",
            stats.structured_steps_total.to_string(),
        );
        sample(
            "structured_output_rows_total",
            c,
            "Constrained rows whose token mask was computed.",
            stats.structured_rows_total.to_string(),
        );
        sample(
            "structured_output_mask_seconds_total",
            c,
            "Host seconds spent computing structured-output token masks.",
            stats.structured_mask_seconds_total.to_string(),
        );
        sample(
            "structured_output_forced_tokens_total",
            c,
            "Tokens the grammar forced (taken without a choice from logits; jump-forward runs included).",
            stats.structured_forced_tokens_total.to_string(),
        );
        sample(
            "kv_event_batches_total",
            c,
            "KV cache event batches made (--kv-events-endpoint; one per step that cached or evicted blocks).",
            stats.kv_event_batches_total.to_string(),
        );
        sample(
            "kv_event_batches_dropped_total",
            c,
            "KV cache event batches dropped because the publisher's queue was full.",
            stats.kv_event_batches_dropped_total.to_string(),
        );
        let m = self.lock();
        let name = "request_success_total";
        let _ = writeln!(
            out,
            "# HELP {PREFIX}{name} Requests ended, by finish reason."
        );
        let _ = writeln!(out, "# TYPE {PREFIX}{name} counter");
        for (reason, n) in ["stop", "length", "abort"].iter().zip(m.finished) {
            let _ = writeln!(
                out,
                "{PREFIX}{name}{{{l},finished_reason=\"{reason}\"}} {n}"
            );
        }
        m.ttft.render(
            &mut out,
            "time_to_first_token_seconds",
            "Time to first token.",
            l,
        );
        m.itl.render(
            &mut out,
            "inter_token_latency_seconds",
            "Time between two outputs of a choice.",
            l,
        );
        m.tpot.render(
            &mut out,
            "request_time_per_output_token_seconds",
            "Mean time per output token after the first, per request.",
            l,
        );
        m.e2e.render(
            &mut out,
            "e2e_request_latency_seconds",
            "End-to-end request latency.",
            l,
        );
        m.prompt_tokens.render(
            &mut out,
            "request_prompt_tokens",
            "Prompt tokens per request.",
            l,
        );
        m.generation_tokens.render(
            &mut out,
            "request_generation_tokens",
            "Generated tokens per request.",
            l,
        );
        out
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Parses sample lines into name{labels} -> value, checking every line's syntax.
    fn samples(text: &str) -> HashMap<String, f64> {
        let mut out = HashMap::new();
        let mut typed = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split(' ');
                let name = parts.next().unwrap();
                assert!(["gauge", "counter", "histogram"].contains(&parts.next().unwrap()));
                assert!(typed.insert(name.to_string()), "{name} typed twice");
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            let (key, value) = line.rsplit_once(' ').expect("sample line");
            assert!(key.starts_with(PREFIX), "{key}");
            let base = key.split('{').next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| base.strip_suffix(s).filter(|f| typed.contains(*f)))
                .unwrap_or(base);
            assert!(typed.contains(family), "{key} has no TYPE line before it");
            out.insert(
                key.to_string(),
                value.parse::<f64>().expect("numeric value"),
            );
        }
        out
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_le() {
        let mut h = Histogram::new(&[0.1, 1.0]);
        for v in [0.05, 0.1, 0.5, 3.0] {
            h.observe(v);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "help", "a=\"b\"");
        let s = samples(&out);
        assert_eq!(s["ingot:x_bucket{a=\"b\",le=\"0.1\"}"], 2.0);
        assert_eq!(s["ingot:x_bucket{a=\"b\",le=\"1.0\"}"], 3.0);
        assert_eq!(s["ingot:x_bucket{a=\"b\",le=\"+Inf\"}"], 4.0);
        assert_eq!(s["ingot:x_count{a=\"b\"}"], 4.0);
        assert!((s["ingot:x_sum{a=\"b\"}"] - 3.65).abs() < 1e-12);
    }

    #[test]
    fn exposition_carries_engine_stats_and_observations() {
        let m = Metrics::new("my \"model\"", 100);
        m.observe_first_token(0.03);
        m.observe_inter_token(0.02);
        m.observe_request(RequestRecord {
            e2e_secs: 1.2,
            tpot_secs: Some(0.02),
            prompt_tokens: 12,
            generation_tokens: 7,
            finish: FinishReason::Length,
        });
        let stats = EngineStats {
            num_running: 3,
            num_waiting: 2,
            kv_usage: 0.25,
            num_blocks: 64,
            prefix_cache_queries: 40,
            prefix_cache_hits: 16,
            prompt_tokens_total: 120,
            generation_tokens_total: 77,
            ..Default::default()
        };
        let text = m.render(&stats);
        let s = samples(&text);
        let l = "model_name=\"my \\\"model\\\"\"";
        let get = |name: &str| s[&format!("ingot:{name}{{{l}}}")];
        assert_eq!(get("num_requests_running"), 3.0);
        assert_eq!(get("num_requests_waiting"), 2.0);
        assert_eq!(get("kv_cache_usage_perc"), 0.25);
        assert_eq!(get("prefix_cache_queries_total"), 40.0);
        assert_eq!(get("prefix_cache_hits_total"), 16.0);
        assert_eq!(get("prompt_tokens_total"), 120.0);
        assert_eq!(get("generation_tokens_total"), 77.0);
        assert_eq!(get("time_to_first_token_seconds_count"), 1.0);
        assert_eq!(get("inter_token_latency_seconds_count"), 1.0);
        assert_eq!(get("e2e_request_latency_seconds_count"), 1.0);
        assert_eq!(
            s[&format!("ingot:e2e_request_latency_seconds_bucket{{{l},le=\"1.0\"}}")],
            0.0
        );
        assert_eq!(
            s[&format!("ingot:e2e_request_latency_seconds_bucket{{{l},le=\"1.5\"}}")],
            1.0
        );
        assert_eq!(
            s[&format!("ingot:request_prompt_tokens_bucket{{{l},le=\"10.0\"}}")],
            0.0
        );
        assert_eq!(
            s[&format!("ingot:request_prompt_tokens_bucket{{{l},le=\"20.0\"}}")],
            1.0
        );
        assert_eq!(
            s[&format!("ingot:request_success_total{{{l},finished_reason=\"length\"}}")],
            1.0
        );
        assert_eq!(
            s[&format!("ingot:request_success_total{{{l},finished_reason=\"stop\"}}")],
            0.0
        );
        assert_eq!(
            one_two_five(100),
            vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]
        );
    }
}
