//! `ingot bench`: offline engine benchmarks on the real model and backend.
//!
//! - `batched`: like llama.cpp's `llama-batched-bench`: for each batch size B, B random
//!   prompts of `--npp` tokens each generate `--ntg` tokens (greedy, EOS ignored), all
//!   submitted at once. Reports prompt throughput (S_PP: prompt tokens over the time until
//!   every request has its first token), generation throughput (S_TG: tokens generated after
//!   that point over the remaining time) and overall throughput (S). For the generation
//!   phase it also splits the average step into host time (scheduling, batch building,
//!   recording kernels, sampling) and time blocked waiting for the device (GPU time not
//!   hidden behind host work), and counts kernel dispatches per step. A short request runs
//!   first, untimed, so that one-time costs (first allocations) stay out of the figures.
//! - `prefix-cache`: time to first token of a request whose `--prefix` tokens are already
//!   cached, against the same request with a cold cache.
//! - `serve`: the serving benchmark against an HTTP server, in the `ingot-bench` crate.

use std::time::Instant;

use anyhow::Result;
use clap::{Args, Subcommand};
use ingot_bench::ServeBenchArgs;
use ingot_engine::{EngineCore, EngineRequest};
use ingot_scheduler::SamplingParams;
use ingot_tensor::Backend;
use tokio::sync::mpsc::unbounded_channel;

use crate::setup::{self, EngineArgs};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Aggregate prefill and decode throughput at several batch sizes.
    Batched(BatchedArgs),
    /// Time to first token with and without a cached prompt prefix.
    PrefixCache(PrefixArgs),
    /// Serving benchmark against an OpenAI-compatible HTTP server (TTFT, TPOT, ITL, throughput).
    Serve(Box<ServeBenchArgs>),
}

#[derive(Args)]
pub struct BatchedArgs {
    /// Prompt tokens per request.
    #[arg(long, default_value_t = 128)]
    npp: usize,
    /// Generated tokens per request.
    #[arg(long, default_value_t = 128)]
    ntg: usize,
    /// Batch sizes (concurrent requests), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
    npl: Vec<usize>,
    #[command(flatten)]
    engine: EngineArgs,
}

#[derive(Args)]
pub struct PrefixArgs {
    /// Shared prefix length in tokens.
    #[arg(long, default_value_t = 512)]
    prefix: usize,
    /// Distinct tail after the prefix.
    #[arg(long, default_value_t = 16)]
    tail: usize,
    #[command(flatten)]
    engine: EngineArgs,
}

pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Batched(a) => crate::backend::with_backend!(a.engine, |be| {
            batched(setup::build_core(&a.engine, be)?, &a)
        }),
        BenchCommand::PrefixCache(a) => crate::backend::with_backend!(a.engine, |be| {
            prefix_cache(setup::build_core(&a.engine, be)?, &a)
        }),
        BenchCommand::Serve(a) => ingot_bench::run(*a),
    }
}

/// Token ids spread over the vocabulary, different for every `salt`.
fn prompt(len: usize, vocab: usize, salt: u64) -> Vec<u32> {
    let mut x = salt.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % (vocab as u64 - 256) + 100) as u32
        })
        .collect()
}

struct Timing {
    first_all: f64,
    total: f64,
    tokens_after_first_all: usize,
    /// Generation phase (after every request had its first token).
    tg: PhaseSplit,
}

/// Steps of one phase, with the backend's counters over them.
#[derive(Default)]
struct PhaseSplit {
    steps: usize,
    seconds: f64,
    wait_seconds: f64,
    dispatches: u64,
}

impl PhaseSplit {
    fn per_step(&self, x: f64) -> f64 {
        x / self.steps.max(1) as f64
    }
}

/// Submits every prompt at once and steps the core to completion.
fn drive<B: Backend>(
    core: &mut EngineCore<B>,
    prompts: Vec<Vec<u32>>,
    ntg: usize,
    salt: u64,
) -> Result<Timing> {
    let params = SamplingParams {
        ignore_eos: true,
        ..SamplingParams::greedy(ntg)
    };
    let mut rxs = Vec::new();
    for (i, p) in prompts.into_iter().enumerate() {
        let (tx, rx) = unbounded_channel();
        let req = EngineRequest {
            id: salt * 1_000_000 + i as u64,
            prompt: p,
            params: params.clone(),
            priority: 0,
        };
        core.add_request(req, tx)?;
        rxs.push(rx);
    }
    let start = Instant::now();
    let mut started = vec![false; rxs.len()];
    let mut first_all = None;
    let mut after = 0;
    let mut tg = PhaseSplit::default();
    while core.has_unfinished() {
        let before = (Instant::now(), core.backend().counters());
        core.step();
        if first_all.is_some() {
            let c = core.backend().counters();
            tg.steps += 1;
            tg.seconds += before.0.elapsed().as_secs_f64();
            tg.wait_seconds += c.wait_seconds - before.1.wait_seconds;
            tg.dispatches += c.dispatches - before.1.dispatches;
        }
        for (i, rx) in rxs.iter_mut().enumerate() {
            while let Ok(o) = rx.try_recv() {
                if let Some(e) = o.error {
                    anyhow::bail!(e);
                }
                if first_all.is_some() {
                    after += o.token_ids.len();
                }
                started[i] = true;
            }
        }
        if first_all.is_none() && started.iter().all(|&s| s) {
            first_all = Some(start.elapsed().as_secs_f64());
        }
    }
    core.step();
    let total = start.elapsed().as_secs_f64();
    Ok(Timing {
        first_all: first_all.unwrap_or(total),
        total,
        tokens_after_first_all: after,
        tg,
    })
}

fn batched<B: Backend>(mut core: EngineCore<B>, a: &BatchedArgs) -> Result<()> {
    let vocab = core.tokenizer().vocab_size();
    drive(&mut core, vec![prompt(32, vocab, 0)], 4, 0)?; // warm-up, untimed
    println!(
        "|    PP |    TG |    B |   N_KV |   T_PP s | S_PP t/s |   T_TG s | S_TG t/s |      T s |    S t/s | TG step ms | host ms | wait ms | disp/step |"
    );
    println!(
        "|-------|-------|------|--------|----------|----------|----------|----------|----------|----------|------------|---------|---------|-----------|"
    );
    for (round, &b) in a.npl.iter().enumerate() {
        let salt = round as u64 + 1;
        let prompts = (0..b)
            .map(|i| prompt(a.npp, vocab, salt * 10_000 + i as u64))
            .collect();
        let t = drive(&mut core, prompts, a.ntg, salt)?;
        let t_tg = t.total - t.first_all;
        let tg = &t.tg;
        println!(
            "| {:5} | {:5} | {:4} | {:6} | {:8.3} | {:8.2} | {:8.3} | {:8.2} | {:8.3} | {:8.2} | {:10.2} | {:7.2} | {:7.2} | {:9.0} |",
            a.npp,
            a.ntg,
            b,
            b * (a.npp + a.ntg),
            t.first_all,
            (b * a.npp) as f64 / t.first_all,
            t_tg,
            t.tokens_after_first_all as f64 / t_tg.max(1e-9),
            t.total,
            (b * (a.npp + a.ntg)) as f64 / t.total,
            tg.per_step(tg.seconds) * 1e3,
            tg.per_step(tg.seconds - tg.wait_seconds) * 1e3,
            tg.per_step(tg.wait_seconds) * 1e3,
            tg.per_step(tg.dispatches as f64),
        );
    }
    Ok(())
}

fn prefix_cache<B: Backend>(mut core: EngineCore<B>, a: &PrefixArgs) -> Result<()> {
    let vocab = core.tokenizer().vocab_size();
    let prefix = prompt(a.prefix, vocab, 7);
    let with_tail = |salt| {
        let mut p = prefix.clone();
        p.extend(prompt(a.tail, vocab, salt));
        p
    };
    let cold = drive(&mut core, vec![with_tail(1)], 1, 1)?;
    let warm = drive(&mut core, vec![with_tail(2)], 1, 2)?;
    let hits = core.stats().prefix_cache_hits;
    println!(
        "prompt {} tokens ({} shared): TTFT cold {:.1} ms, with cached prefix {:.1} ms ({:.1}x); cache hits {} tokens",
        a.prefix + a.tail,
        a.prefix,
        cold.first_all * 1e3,
        warm.first_all * 1e3,
        cold.first_all / warm.first_all,
        hits
    );
    Ok(())
}
