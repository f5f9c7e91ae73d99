//! kv_write + paged_attention on the GPU against the CPU reference, and the batch
//! invariance of GPU attention.
//!
//! Scenes: several sequences of odd lengths whose blocks are scattered over a shuffled pool,
//! written with kv_write and attended in one varlen launch that mixes whole prompts, prompt
//! chunks and single decode tokens; GQA groups of 1, 4 and 7; head dims 64, 40, 128 and 256;
//! block sizes 16 and 5; with and without a sliding window. Caches start as NaN on both
//! backends, so a read of any slot not written poisons the output.
//!
//! Tolerance: |gpu − cpu| ≤ 1e-5 (q, k, v uniform in [-1, 1): outputs are convex combinations
//! of V rows, so this is 1e-5 relative to the V scale). kv_write must be exact. Batch
//! invariance is bitwise within the GPU backend.

mod common;

use common::*;
use ingot_backend_cpu::CpuBackend;
use ingot_backend_wgpu::WgpuBackend;
use ingot_tensor::{AttentionMeta, AttentionParams, Backend, Tensor};
use ingot_testkit::paged::{Geo, KvRows, Queries, Scene};

/// Runs kv_write of `writes` then paged_attention of `reads` on backend `be`; returns the
/// attention output and both caches.
fn run<B: Backend>(
    be: &B,
    scene: &Scene,
    writes: &[(usize, std::ops::Range<usize>)],
    reads: &[(usize, usize, usize)],
    window: Option<usize>,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let g = scene.geo;
    let shape = scene.cache_shape();
    let nan = vec![f32::NAN; shape.iter().product()];
    let f = |data: &[f32], dims: &[usize]| -> Tensor<B> {
        be.from_f32(data, dims.into(), ingot_tensor::DType::F32)
            .unwrap()
    };
    let u = |data: &[u32], dims: &[usize]| -> Tensor<B> { be.from_u32(data, dims.into()).unwrap() };
    let (mut kc, mut vc) = (f(&nan, &shape), f(&nan, &shape));
    let KvRows { k, v, slots } = scene.kv_rows(writes);
    let t = slots.len();
    be.kv_write(
        &f(&k, &[t, g.hk, g.d]),
        &f(&v, &[t, g.hk, g.d]),
        &mut kc,
        &mut vc,
        &u(&slots, &[t]),
    )
    .unwrap();
    // Tables padded to the longest one, no spare column.
    let Queries {
        q,
        tables,
        lens,
        qsl,
        max_blocks,
    } = scene.queries(reads, 0);
    let s = lens.len();
    let tq = *qsl.last().unwrap() as usize;
    let (bt, sl, ql) = (
        u(&tables, &[s, max_blocks]),
        u(&lens, &[s]),
        u(&qsl, &[s + 1]),
    );
    let meta = AttentionMeta {
        block_tables: &bt,
        seq_lens: &sl,
        query_start_loc: &ql,
        max_seq_len: *lens.iter().max().unwrap() as usize,
    };
    let params = AttentionParams {
        scale: 1.0 / (g.d as f32).sqrt(),
        sliding_window: window,
    };
    let out = be
        .paged_attention(&f(&q, &[tq, g.hq, g.d]), &kc, &vc, &meta, params)
        .unwrap();
    (
        be.to_f32(&out).unwrap(),
        be.to_f32(&kc).unwrap(),
        be.to_f32(&vc).unwrap(),
    )
}

#[track_caller]
fn assert_same_cache(got: &[f32], want: &[f32], what: &str) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
            "{what}: cache element {i}: {g} vs {w}"
        );
    }
}

fn compare(gpu: &WgpuBackend, rng: &mut Rng, geo: Geo, lens: &[usize], window: Option<usize>) {
    let cpu = CpuBackend::new();
    let scene = Scene::new(rng, geo, lens);
    // Write every token; read: seq 0 whole prompt, seq 1 a chunk of 7 queries, the others
    // as single decode tokens (and empty reads for a sequence with no new query).
    let writes: Vec<_> = (0..lens.len()).map(|s| (s, 0..lens[s])).collect();
    let reads: Vec<_> = lens
        .iter()
        .enumerate()
        .map(|(s, &len)| match s {
            0 => (s, len, len),
            1 => (s, len, 7.min(len)),
            _ if s == lens.len() - 1 => (s, len, 0),
            _ => (s, len, 1),
        })
        .collect();
    let what = format!("{geo:?} lens {lens:?} window {window:?}");
    let (go, gk, gv) = run(gpu, &scene, &writes, &reads, window);
    let (co, ck, cv) = run(&cpu, &scene, &writes, &reads, window);
    assert_same_cache(&gk, &ck, &format!("{what}: k"));
    assert_same_cache(&gv, &cv, &format!("{what}: v"));
    assert_close(&go, &co, 1e-5, &what);
}

#[test]
fn paged_attention_matches_cpu() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::new(11);
    let lens = [37, 100, 1, 64, 129, 5];
    for geo in [
        Geo {
            hq: 8,
            hk: 2,
            d: 64,
            bs: 16,
        },
        Geo {
            hq: 7,
            hk: 1,
            d: 40,
            bs: 5,
        },
        Geo {
            hq: 3,
            hk: 3,
            d: 128,
            bs: 16,
        },
        Geo {
            hq: 4,
            hk: 1,
            d: 256,
            bs: 16,
        },
    ] {
        compare(&gpu, &mut rng, geo, &lens, None);
    }
    let geo = Geo {
        hq: 8,
        hk: 2,
        d: 64,
        bs: 16,
    };
    for window in [1, 17, 64, 1000] {
        compare(&gpu, &mut rng, geo, &lens, Some(window));
    }
    // Long contexts: many 64-position chunks.
    compare(&gpu, &mut rng, geo, &[700, 300, 1, 1], None);
}

/// A query's output bits do not depend on the batch: decoded alone, decoded among other
/// sequences, or computed as part of the whole prompt (prefill).
#[test]
fn paged_attention_is_batch_invariant() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::new(12);
    let geo = Geo {
        hq: 8,
        hk: 2,
        d: 64,
        bs: 16,
    };
    let lens = [150, 40, 77, 3];
    let scene = Scene::new(&mut rng, geo, &lens);
    let writes: Vec<_> = (0..lens.len()).map(|s| (s, 0..lens[s])).collect();
    let row = geo.hq * geo.d;
    let (alone, _, _) = run(&gpu, &scene, &writes, &[(0, 150, 1)], None);
    let (batch, _, _) = run(
        &gpu,
        &scene,
        &writes,
        &[(1, 40, 40), (0, 150, 1), (2, 77, 1), (3, 3, 2)],
        None,
    );
    assert_bits(
        &batch[40 * row..41 * row],
        &alone,
        "decode alone vs in a batch",
    );
    let (prefill, _, _) = run(&gpu, &scene, &writes, &[(2, 77, 1), (0, 150, 150)], None);
    assert_bits(
        &prefill[150 * row..151 * row],
        &alone,
        "decode vs last row of a prefill",
    );
    let (chunked, _, _) = run(&gpu, &scene, &writes, &[(0, 120, 50)], None);
    assert_bits(
        &chunked[..50 * row],
        &prefill[(1 + 70) * row..(1 + 120) * row],
        "chunked prefill vs whole prompt",
    );
}
