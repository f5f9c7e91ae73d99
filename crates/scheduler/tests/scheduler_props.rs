//! Property tests of the scheduler and KV cache manager, driven by a fake runner that
//! samples a token derived from the request and its length. Random mixes of arrivals,
//! prompt lengths (with shared prefixes, so the prefix cache is exercised), output lengths,
//! aborts, tight KV budgets (forcing preemption) and token budgets (forcing chunking).
//! The fake runner also returns runs of forced tokens after some samples (structured
//! output's jump-forward), which the next steps compute as chunks.

use std::collections::{HashMap, HashSet};

use ingot_scheduler::{
    FinishReason, KvGroupSpec, Request, SamplingParams, Scheduler, SchedulerConfig,
};
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct Arrival {
    step: usize,
    prefix: usize,
    prompt_len: usize,
    max_tokens: usize,
    abort_at: Option<usize>,
}

fn arrival() -> impl Strategy<Value = Arrival> {
    (
        0usize..30,
        0usize..3,
        1usize..70,
        1usize..24,
        proptest::option::weighted(0.2, 0usize..40),
    )
        .prop_map(|(step, prefix, prompt_len, max_tokens, abort_at)| Arrival {
            step,
            prefix,
            prompt_len,
            max_tokens,
            abort_at,
        })
}

fn fake_token(id: u64, len: usize) -> u32 {
    ((id * 31 + len as u64 * 7) % 1000) as u32 + 10
}

/// The fake runner's tokens for a request of `len` tokens: the sampled one, then up to four
/// "forced" ones, as a grammar's jump-forward would append.
fn fake_run(id: u64, len: usize) -> Vec<u32> {
    let forced = (fake_token(id, len) % 5) as usize;
    (0..=forced).map(|k| fake_token(id, len + k)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn bookkeeping_holds(
        arrivals in proptest::collection::vec(arrival(), 1..25),
        num_blocks in 8usize..64,
        block_size in prop_oneof![Just(4usize), Just(16)],
        budget in prop_oneof![Just(8usize), Just(32), Just(512)],
        max_num_seqs in 1usize..12,
        window in proptest::option::weighted(0.5, (1usize..40, 4usize..40)),
    ) {
        let cfg = SchedulerConfig {
            max_num_seqs,
            max_num_batched_tokens: budget,
            max_model_len: 256,
            num_blocks,
            block_size,
            enable_prefix_caching: true,
        };
        // Optionally a second KV cache group: a sliding window of `w` over `blocks` blocks.
        let mut groups = vec![KvGroupSpec { sliding_window: None, num_blocks }];
        if let Some((w, blocks)) = window {
            groups.push(KvGroupSpec { sliding_window: Some(w), num_blocks: blocks });
        }
        let mut s = Scheduler::with_kv_groups(cfg, &groups);
        let mut accepted = HashSet::new();
        let mut finished: HashMap<u64, FinishReason> = HashMap::new();
        let mut aborts: HashMap<usize, Vec<u64>> = HashMap::new();
        let mut outputs: HashMap<u64, usize> = HashMap::new();
        let mut step = 0;
        loop {
            for (i, a) in arrivals.iter().enumerate().filter(|(_, a)| a.step == step) {
                let id = i as u64;
                // Prompts share one of three prefixes of 40 tokens.
                let prompt: Vec<u32> = (0..a.prompt_len)
                    .map(|j| if j < 40 { (a.prefix * 1000 + j) as u32 } else { (id * 100 + j as u64) as u32 })
                    .collect();
                let params = SamplingParams { max_tokens: a.max_tokens, ..SamplingParams::greedy(a.max_tokens) };
                if s.add_request(Request::new(id, prompt, params, vec![1])).is_ok() {
                    accepted.insert(id);
                    if let Some(at) = a.abort_at {
                        aborts.entry(step + at).or_default().push(id);
                    }
                }
            }
            for id in aborts.remove(&step).unwrap_or_default() {
                if s.finish_request(id, FinishReason::Abort) {
                    prop_assert!(finished.insert(id, FinishReason::Abort).is_none());
                }
            }
            let out = s.schedule();
            prop_assert!(out.num_batched_tokens <= budget);
            prop_assert!(out.scheduled.len() <= max_num_seqs);
            let total: usize = out.scheduled.iter().map(|r| r.new_token_ids.len()).sum();
            prop_assert_eq!(total, out.num_batched_tokens);
            s.check_invariants();
            // No block in two requests' tables unless it is a shared (prefix-cached) block:
            // in each group, a block's refcount is the number of live requests holding it (a
            // running request may sit out a step whose budget went to others' chunks); every
            // position a scheduled chunk reads is in a block it holds.
            for (g, spec) in groups.iter().enumerate() {
                let mut owners: HashMap<u32, usize> = HashMap::new();
                for id in &accepted {
                    if let Some(blocks) = s.request(*id).and_then(|r| r.blocks.as_ref()) {
                        for b in blocks.group_ids(g).filter(|&b| b != u32::MAX) {
                            *owners.entry(b).or_default() += 1;
                        }
                    }
                }
                for r in &out.scheduled {
                    let table = &r.block_ids[g];
                    let end = r.num_computed_tokens + r.new_token_ids.len();
                    prop_assert!(table.len() * block_size >= end);
                    let first = spec.sliding_window.map_or(0, |w| (r.num_computed_tokens + 1).saturating_sub(w));
                    for p in first..end {
                        prop_assert!(table[p / block_size] != u32::MAX, "position {} freed", p);
                    }
                    if let Some(w) = spec.sliding_window {
                        let held = table.iter().filter(|&&b| b != u32::MAX).count();
                        prop_assert!(held <= (w - 1 + r.new_token_ids.len()).div_ceil(block_size) + 1);
                    }
                }
                for (b, n) in owners {
                    prop_assert_eq!(n as u32, s.kv().group_pool(g).ref_cnt(ingot_kv_cache::BlockId(b)));
                }
            }
            let sampled: HashMap<u64, Vec<u32>> = out
                .scheduled
                .iter()
                .filter(|r| r.sample)
                .map(|r| (r.id, fake_run(r.id, r.num_computed_tokens + r.new_token_ids.len())))
                .collect();
            for r in s.update(&out, &sampled) {
                let run = &sampled[&r.id];
                prop_assert!(!r.tokens.is_empty() && r.tokens.len() <= run.len());
                prop_assert_eq!(&r.tokens[..], &run[..r.tokens.len()]);
                let n = outputs.entry(r.id).or_insert(0);
                *n += r.tokens.len();
                let max_tokens = arrivals[r.id as usize].max_tokens;
                prop_assert!(*n <= max_tokens, "request {} got {} tokens, max {}", r.id, n, max_tokens);
                if r.tokens.len() < run.len() {
                    // A forced run is cut only where the request ends.
                    prop_assert!(r.finished.is_some());
                }
                if r.finished == Some(FinishReason::Length) {
                    let prompt_len = arrivals[r.id as usize].prompt_len;
                    prop_assert!(*n == max_tokens || prompt_len + *n == 256);
                }
                if let Some(reason) = r.finished {
                    prop_assert!(finished.insert(r.id, reason).is_none(), "request {} finished twice", r.id);
                }
            }
            s.check_invariants();
            step += 1;
            let arrivals_left = arrivals.iter().any(|a| a.step >= step);
            if !arrivals_left && !s.has_unfinished() {
                break;
            }
            prop_assert!(step < 5000, "no progress");
        }
        // Every accepted request finished exactly once; every block is free again.
        prop_assert_eq!(finished.keys().copied().collect::<HashSet<_>>(), accepted);
        for (g, spec) in groups.iter().enumerate() {
            prop_assert_eq!(s.kv().group_pool(g).num_free(), spec.num_blocks);
        }
    }
}

#[test]
fn second_request_computes_only_past_the_cached_prefix() {
    let cfg = SchedulerConfig {
        max_num_seqs: 4,
        max_num_batched_tokens: 2048,
        max_model_len: 4096,
        num_blocks: 200,
        block_size: 16,
        enable_prefix_caching: true,
    };
    let mut s = Scheduler::new(cfg);
    let prefix: Vec<u32> = (0..512).map(|i| i % 900 + 5).collect();
    let run = |s: &mut Scheduler, id: u64, tail: &[u32]| -> usize {
        let prompt: Vec<u32> = prefix.iter().chain(tail).copied().collect();
        s.add_request(Request::new(id, prompt, SamplingParams::greedy(2), vec![]))
            .unwrap();
        let mut computed = 0;
        while s.has_unfinished() {
            let out = s.schedule();
            computed += out.num_batched_tokens;
            let sampled = out
                .scheduled
                .iter()
                .filter(|r| r.sample)
                .map(|r| (r.id, vec![7]))
                .collect();
            s.update(&out, &sampled);
        }
        computed
    };
    let first = run(&mut s, 1, &[1, 2, 3]);
    assert_eq!(first, 515 + 1);
    let second = run(&mut s, 2, &[4, 5, 6, 7]);
    // 512 tokens from the cache; computes its 4 new prompt tokens and 1 decode step.
    assert_eq!(second, 4 + 1);
    assert_eq!(s.kv_stats().prefix_cache_hits, 512);
}

#[test]
fn preemption_recomputes_and_loses_nothing() {
    // Room for 6 blocks of 4 tokens; each request needs 5 blocks at its end.
    let cfg = SchedulerConfig {
        max_num_seqs: 4,
        max_num_batched_tokens: 64,
        max_model_len: 64,
        num_blocks: 6,
        block_size: 4,
        enable_prefix_caching: false,
    };
    let mut s = Scheduler::new(cfg);
    for id in 0..2u64 {
        let prompt: Vec<u32> = (0..8).map(|j| (id * 10 + j) as u32).collect();
        s.add_request(Request::new(id, prompt, SamplingParams::greedy(12), vec![]))
            .unwrap();
    }
    let mut preempted = 0;
    let mut outputs: HashMap<u64, Vec<u32>> = HashMap::new();
    while s.has_unfinished() {
        let out = s.schedule();
        preempted += out.preempted.len();
        let sampled: HashMap<u64, Vec<u32>> = out
            .scheduled
            .iter()
            .filter(|r| r.sample)
            .map(|r| {
                (
                    r.id,
                    vec![fake_token(
                        r.id,
                        r.num_computed_tokens + r.new_token_ids.len(),
                    )],
                )
            })
            .collect();
        for r in s.update(&out, &sampled) {
            outputs.entry(r.id).or_default().extend(r.tokens);
        }
        s.check_invariants();
    }
    assert!(
        preempted > 0,
        "the cache is too small for both, so one must be preempted"
    );
    for id in 0..2u64 {
        let expect: Vec<u32> = (8..20).map(|len| fake_token(id, len)).collect();
        assert_eq!(outputs[&id], expect, "request {id}");
    }
    assert_eq!(s.kv().num_free_blocks(), 6);
}

#[test]
fn waiting_requests_run_by_priority_then_arrival() {
    let cfg = SchedulerConfig {
        max_num_seqs: 1,
        max_num_batched_tokens: 64,
        max_model_len: 64,
        num_blocks: 16,
        block_size: 4,
        enable_prefix_caching: false,
    };
    let mut s = Scheduler::new(cfg);
    for (id, priority) in [(0u64, 0), (1, 5), (2, -1), (3, 0)] {
        let mut r = Request::new(id, vec![1, 2, 3], SamplingParams::greedy(1), vec![]);
        r.priority = priority;
        s.add_request(r).unwrap();
    }
    let mut order = Vec::new();
    while s.has_unfinished() {
        let out = s.schedule();
        let sampled: HashMap<u64, Vec<u32>> =
            out.scheduled.iter().map(|r| (r.id, vec![9])).collect();
        order.extend(out.scheduled.iter().map(|r| r.id));
        s.update(&out, &sampled);
    }
    assert_eq!(order, [2, 0, 3, 1]);
}

#[test]
fn forced_runs_are_computed_as_one_chunk_and_cut_by_stop_conditions() {
    let cfg = SchedulerConfig {
        max_num_seqs: 4,
        max_num_batched_tokens: 64,
        max_model_len: 64,
        num_blocks: 16,
        block_size: 4,
        enable_prefix_caching: false,
    };
    let mut s = Scheduler::new(cfg);
    // Request 0: max 5 tokens; request 1: EOS (1) inside its forced run.
    s.add_request(Request::new(
        0,
        vec![5, 6, 7],
        SamplingParams::greedy(5),
        vec![1],
    ))
    .unwrap();
    s.add_request(Request::new(
        1,
        vec![8, 9],
        SamplingParams::greedy(20),
        vec![1],
    ))
    .unwrap();
    let out = s.schedule();
    let sampled = HashMap::from([(0, vec![20, 21, 22]), (1, vec![30, 31, 1, 32])]);
    let res = s.update(&out, &sampled);
    assert_eq!(res[0].tokens, [20, 21, 22]);
    assert_eq!(res[0].finished, None);
    // Everything up to and including EOS is appended; what followed it is dropped.
    assert_eq!(res[1].tokens, [30, 31, 1]);
    assert_eq!(res[1].finished, Some(FinishReason::Stop));
    // The next step computes request 0's three new tokens together and samples once.
    let out = s.schedule();
    assert_eq!(out.scheduled.len(), 1);
    assert_eq!(out.scheduled[0].new_token_ids, [20, 21, 22]);
    assert_eq!(out.scheduled[0].num_computed_tokens, 3);
    assert!(out.scheduled[0].sample);
    // A run past max_tokens is cut at it, with `length`.
    let res = s.update(&out, &HashMap::from([(0, vec![23, 24, 25, 26])]));
    assert_eq!(res[0].tokens, [23, 24]);
    assert_eq!(res[0].finished, Some(FinishReason::Length));
    assert!(!s.has_unfinished());
    s.check_invariants();
    assert_eq!(s.kv().num_free_blocks(), 16);
}
