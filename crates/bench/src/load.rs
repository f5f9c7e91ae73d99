//! Load generation: which request goes out when, and collecting what came back.
//!
//! Two shapes of load, as in vLLM's `bench serve`:
//! - a fixed number in flight (`--concurrency C`): C clients, each sending its next request
//!   as soon as its last one ends (a closed loop: the server's speed sets the arrival rate);
//! - Poisson arrivals (`--request-rate R`): request i is sent at a fixed time drawn before
//!   the run (exponential gaps of mean 1/R, seeded), whether or not earlier ones are done
//!   (an open loop). `inf` sends everything at once.
//!
//! A run is bounded: it ends after its prompts, or at `--max-duration`, when requests not
//! yet sent are dropped and those in flight are cancelled (their connection is closed, which
//! makes the server abort them) and recorded as aborted. All requests run as futures on one
//! task, so no thread is busy between network reads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::stream::{self, FuturesUnordered, StreamExt};
use indicatif::ProgressBar;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};

use crate::http::{Endpoint, HttpClient};
use crate::prompts::Prompt;
use crate::stats::{Outcome, RequestResult};

/// How requests are offered to the server.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Load {
    /// This many requests in flight at all times (while prompts remain).
    Concurrency(usize),
    /// Poisson arrivals at this many requests per second (`f64::INFINITY`: all at once).
    Rate(f64),
}

/// Send times, in seconds from the start, of `n` Poisson arrivals at `rate` per second: the
/// first at 0, then exponential gaps drawn from a ChaCha8 stream seeded with `seed`.
/// Returns `[n]` ascending times.
pub fn arrival_times(n: usize, rate: f64, seed: u64) -> Vec<f64> {
    if rate.is_infinite() {
        return vec![0.0; n];
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut t = 0.0;
    (0..n)
        .map(|i| {
            if i > 0 {
                // u in (0, 1], so ln(u) is finite.
                let u = ((rng.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64;
                t += -u.ln() / rate;
            }
            t
        })
        .collect()
}

/// The body of one streaming request for `prompt`: greedy, usage in the last chunk,
/// `ignore_eos` when asked (vLLM's extension), then `extra` fields on top.
pub fn request_body(
    endpoint: Endpoint,
    model: &str,
    prompt: &Prompt,
    ignore_eos: bool,
    extra: &Map<String, Value>,
) -> Value {
    let mut body = json!({
        "model": model,
        "max_tokens": prompt.output_len,
        "temperature": 0.0,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let obj = body.as_object_mut().expect("a JSON object");
    match endpoint {
        Endpoint::Completions => {
            obj.insert("prompt".into(), json!(prompt.text));
        }
        Endpoint::Chat => {
            obj.insert(
                "messages".into(),
                json!([{"role": "user", "content": prompt.text}]),
            );
            obj.insert("max_completion_tokens".into(), json!(prompt.output_len));
        }
    }
    if ignore_eos {
        obj.insert("ignore_eos".into(), json!(true));
    }
    for (k, v) in extra {
        obj.insert(k.clone(), v.clone());
    }
    body
}

/// One request ready to send.
pub struct Job {
    pub body: Value,
    pub prompt_tokens: usize,
    pub max_tokens: usize,
}

/// What a run brought back.
pub struct RunOutput {
    /// One per request sent, in completion order.
    pub results: Vec<RequestResult>,
    /// From the first send to the last end.
    pub duration_s: f64,
    /// Most requests in flight at once.
    pub max_in_flight: usize,
}

/// Sends `jobs` under `load` and waits for all of them (or for `max_duration`).
pub async fn run(
    client: &HttpClient,
    endpoint: Endpoint,
    jobs: Vec<Job>,
    load: Load,
    max_duration: Option<Duration>,
    seed: u64,
    bar: &ProgressBar,
) -> RunOutput {
    let start = Instant::now();
    let deadline = max_duration.map(|d| tokio::time::Instant::from_std(start + d));
    let in_flight = AtomicUsize::new(0);
    let max_in_flight = AtomicUsize::new(0);
    // One request: None when the deadline passed before it was sent.
    let one = |job: Job| {
        let (in_flight, max_in_flight) = (&in_flight, &max_in_flight);
        async move {
            if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                return None;
            }
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            max_in_flight.fetch_max(now, Ordering::SeqCst);
            let send = client.stream(
                endpoint,
                &job.body,
                job.prompt_tokens,
                job.max_tokens,
                start,
            );
            let sent_at = Instant::now();
            let r = match deadline {
                Some(d) => match tokio::time::timeout_at(d, send).await {
                    Ok(r) => r,
                    Err(_) => RequestResult {
                        outcome: Outcome::Aborted,
                        prompt_tokens: job.prompt_tokens,
                        start_s: sent_at.duration_since(start).as_secs_f64(),
                        e2e_s: sent_at.elapsed().as_secs_f64(),
                        ..RequestResult::default()
                    },
                },
                None => send.await,
            };
            in_flight.fetch_sub(1, Ordering::SeqCst);
            bar.inc(1);
            Some(r)
        }
    };
    let results: Vec<RequestResult> = match load {
        Load::Concurrency(c) => {
            stream::iter(jobs)
                .map(one)
                .buffer_unordered(c.max(1))
                .filter_map(|r| async move { r })
                .collect()
                .await
        }
        Load::Rate(rate) => {
            let times = arrival_times(jobs.len(), rate, seed);
            let timed = jobs.into_iter().zip(times).map(|(job, t)| {
                let at = tokio::time::Instant::from_std(start + Duration::from_secs_f64(t));
                let one = &one;
                async move {
                    if deadline.is_some_and(|d| at >= d) {
                        return None;
                    }
                    tokio::time::sleep_until(at).await;
                    one(job).await
                }
            });
            timed
                .collect::<FuturesUnordered<_>>()
                .filter_map(|r| async move { r })
                .collect()
                .await
        }
    };
    RunOutput {
        results,
        duration_s: start.elapsed().as_secs_f64(),
        max_in_flight: max_in_flight.load(Ordering::SeqCst),
    }
}
