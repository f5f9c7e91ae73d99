//! kv_write + paged_attention on the GPU against the CPU reference, and the batch
//! invariance of GPU attention across its two paths (single pass and split-KV); the
//! conformance suite (tests/conformance.rs) holds both backends to the f64 reference.
//!
//! Scenes: several sequences of odd lengths whose blocks are scattered over a shuffled pool,
//! written with kv_write and attended in one varlen launch that mixes whole prompts, prompt
//! chunks and single decode tokens; GQA groups of 1, 4 and 7; head dims 64, 40, 128 and 256;
//! block sizes 16 and 5; with and without a sliding window. Caches start as NaN on both
//! backends, so a read of any slot not written poisons the output.
//!
//! Tolerance: |gpu − cpu| ≤ 1e-5 (q, k, v uniform in [-1, 1): outputs are convex combinations
//! of V rows, so this is 1e-5 relative to the V scale), for f32 and for f16 caches. kv_write
//! must be exact: the f16 cache holds the same round-to-nearest-even bits on both backends.
//! An f16 cache is within 2e-3 of the f32 one (K and V rounded to 11 significant bits).
//! Batch invariance is bitwise within the GPU backend, and so is the split-KV path against
//! the single-pass kernel (the same canonical order, see attention.wgsl).

mod common;

use common::*;
use ingot_backend_cpu::CpuBackend;
use ingot_backend_wgpu::{AttentionSplit, WgpuBackend};
use ingot_tensor::{AttentionMeta, AttentionParams, Backend, DType, Tensor};
use ingot_testkit::conformance::Paged;
use ingot_testkit::paged::{Geo, Scene};

/// paged_attention with a choice of path where the backend has one.
trait Attend: Backend {
    fn attend(
        &self,
        q: &Tensor<Self>,
        k_cache: &Tensor<Self>,
        v_cache: &Tensor<Self>,
        meta: &AttentionMeta<'_, Self>,
        params: AttentionParams,
        split: AttentionSplit,
    ) -> Tensor<Self>;
}

impl Attend for CpuBackend {
    fn attend(
        &self,
        q: &Tensor<Self>,
        k_cache: &Tensor<Self>,
        v_cache: &Tensor<Self>,
        meta: &AttentionMeta<'_, Self>,
        params: AttentionParams,
        _split: AttentionSplit,
    ) -> Tensor<Self> {
        self.paged_attention(q, k_cache, v_cache, meta, params)
            .unwrap()
    }
}

impl Attend for WgpuBackend {
    fn attend(
        &self,
        q: &Tensor<Self>,
        k_cache: &Tensor<Self>,
        v_cache: &Tensor<Self>,
        meta: &AttentionMeta<'_, Self>,
        params: AttentionParams,
        split: AttentionSplit,
    ) -> Tensor<Self> {
        self.paged_attention_split(q, k_cache, v_cache, meta, params, split)
            .unwrap()
    }
}

/// Cache dtype and attention path of one run.
#[derive(Clone, Copy, Debug)]
struct Mode {
    cache: DType,
    split: AttentionSplit,
}

const F32_AUTO: Mode = Mode {
    cache: DType::F32,
    split: AttentionSplit::Auto,
};

/// Runs kv_write of `writes` then paged_attention of `reads` on backend `be` (tables
/// padded to the longest one, no spare column); returns the attention output and both
/// caches (widened to f32).
fn run<B: Attend>(
    be: &B,
    scene: &Scene,
    writes: &[(usize, std::ops::Range<usize>)],
    reads: &[(usize, usize, usize)],
    window: Option<usize>,
    mode: Mode,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut paged = Paged::new(be, scene, mode.cache);
    paged.write(writes);
    let out = paged.attend_with(reads, window, 0, |be, q, kc, vc, meta, params| {
        be.attend(q, kc, vc, meta, params, mode.split)
    });
    let (k, v) = paged.caches();
    (out, k, v)
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

fn compare(
    gpu: &WgpuBackend,
    rng: &mut Rng,
    geo: Geo,
    lens: &[usize],
    window: Option<usize>,
    mode: Mode,
) {
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
    let what = format!("{geo:?} lens {lens:?} window {window:?} {mode:?}");
    let (go, gk, gv) = run(gpu, &scene, &writes, &reads, window, mode);
    let (co, ck, cv) = run(&cpu, &scene, &writes, &reads, window, mode);
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
        for cache in [DType::F32, DType::F16] {
            let mode = Mode {
                cache,
                split: AttentionSplit::Auto,
            };
            compare(&gpu, &mut rng, geo, &lens, None, mode);
        }
    }
    let geo = Geo {
        hq: 8,
        hk: 2,
        d: 64,
        bs: 16,
    };
    for window in [1, 17, 64, 1000] {
        compare(&gpu, &mut rng, geo, &lens, Some(window), F32_AUTO);
    }
    // Long contexts: many 64-position chunks and groups, on both paths.
    for cache in [DType::F32, DType::F16] {
        for split in [AttentionSplit::Never, AttentionSplit::Always] {
            let mode = Mode { cache, split };
            compare(&gpu, &mut rng, geo, &[700, 300, 1, 1], None, mode);
            compare(&gpu, &mut rng, geo, &[530, 513, 3], Some(300), mode);
        }
    }
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
    let (alone, _, _) = run(&gpu, &scene, &writes, &[(0, 150, 1)], None, F32_AUTO);
    let (batch, _, _) = run(
        &gpu,
        &scene,
        &writes,
        &[(1, 40, 40), (0, 150, 1), (2, 77, 1), (3, 3, 2)],
        None,
        F32_AUTO,
    );
    assert_bits(
        &batch[40 * row..41 * row],
        &alone,
        "decode alone vs in a batch",
    );
    let (prefill, _, _) = run(
        &gpu,
        &scene,
        &writes,
        &[(2, 77, 1), (0, 150, 150)],
        None,
        F32_AUTO,
    );
    assert_bits(
        &prefill[150 * row..151 * row],
        &alone,
        "decode vs last row of a prefill",
    );
    let (chunked, _, _) = run(&gpu, &scene, &writes, &[(0, 120, 50)], None, F32_AUTO);
    assert_bits(
        &chunked[..50 * row],
        &prefill[(1 + 70) * row..(1 + 120) * row],
        "chunked prefill vs whole prompt",
    );
}

/// The split-KV path gives the single-pass kernel's bits: random geometries and context
/// lengths (around and across group boundaries, with and without a window), blocks
/// scattered over a shuffled pool, decode rows mixed with prefill chunks, both cache
/// dtypes; and both are within 1e-5 of the CPU.
#[test]
fn split_kv_is_bit_identical_to_single_pass() {
    let Some(gpu) = gpu() else { return };
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(13);
    for case in 0..8 {
        let hk = 1 + rng.below(3);
        let geo = Geo {
            hq: hk * (1 + rng.below(4)),
            hk,
            d: 2 * (4 + rng.below(29)), // even, 8..=64
            bs: [16, 5, 32][rng.below(3)],
        };
        let lens: Vec<usize> = (0..2 + rng.below(3))
            .map(|_| [1, 63, 64, 65, 255, 256, 257, 600, 1300][rng.below(9)] + rng.below(40))
            .collect();
        let window = [None, Some(1), Some(300), Some(700)][rng.below(4)];
        let scene = Scene::new(&mut rng, geo, &lens);
        let writes: Vec<_> = (0..lens.len()).map(|s| (s, 0..lens[s])).collect();
        // Decode rows for all, and a prefill chunk of up to 5 queries for the first.
        let reads: Vec<_> = lens
            .iter()
            .enumerate()
            .map(|(s, &len)| (s, len, if s == 0 { 5.min(len) } else { 1 }))
            .collect();
        for cache in [DType::F32, DType::F16] {
            let what = format!("case {case}: {geo:?} lens {lens:?} window {window:?} {cache}");
            let mode = |split| Mode { cache, split };
            let out = |split| run(&gpu, &scene, &writes, &reads, window, mode(split)).0;
            let single = out(AttentionSplit::Never);
            let split = out(AttentionSplit::Always);
            let auto = out(AttentionSplit::Auto);
            assert_bits(&split, &single, &format!("{what}: split vs single pass"));
            assert_bits(&auto, &single, &format!("{what}: auto vs single pass"));
            let (want, _, _) = run(
                &cpu,
                &scene,
                &writes,
                &reads,
                window,
                mode(AttentionSplit::Auto),
            );
            assert_close(&split, &want, 1e-5, &format!("{what}: split vs cpu"));
        }
    }
}

/// The host rule picks the split path for few decode rows over long contexts only.
#[test]
fn split_rule() {
    assert!(ingot_backend_wgpu::use_split(1, 32, 128, 4096));
    assert!(ingot_backend_wgpu::use_split(8, 9, 64, 1000));
    assert!(!ingot_backend_wgpu::use_split(1, 32, 128, 64), "one group");
    assert!(
        !ingot_backend_wgpu::use_split(2048, 32, 128, 4096),
        "busy grid"
    );
    assert!(
        !ingot_backend_wgpu::use_split(60, 32, 128, 200_000),
        "scratch too big"
    );
}

/// A long decode computed alone (split path) equals the same query as the last row of a
/// whole-prompt prefill (single pass): batch invariance across the two paths.
#[test]
fn long_decode_is_batch_invariant() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::new(14);
    let geo = Geo::new(8, 2, 64, 16);
    let scene = Scene::new(&mut rng, geo, &[1500, 40]);
    let writes = [(0, 0..1500), (1, 0..40)];
    let row = geo.hq * geo.d;
    assert!(ingot_backend_wgpu::use_split(1, geo.hq, geo.d, 1500));
    assert!(!ingot_backend_wgpu::use_split(1501, geo.hq, geo.d, 1500));
    for cache in [DType::F32, DType::F16] {
        let mode = Mode {
            cache,
            split: AttentionSplit::Auto,
        };
        let (alone, _, _) = run(&gpu, &scene, &writes, &[(0, 1500, 1)], None, mode);
        let (prefill, _, _) = run(
            &gpu,
            &scene,
            &writes,
            &[(1, 40, 1), (0, 1500, 1500)],
            None,
            mode,
        );
        assert_bits(
            &prefill[1500 * row..],
            &alone,
            &format!("{cache}: decode vs prefill row"),
        );
    }
}

/// f16 caches: the GPU stores the CPU's round-to-nearest-even bits for every value,
/// including ties, f16 subnormals, values that round to zero, and overflow to infinity.
#[test]
fn f16_kv_write_rounds_like_the_cpu() {
    let Some(gpu) = gpu() else { return };
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(15);
    let (hk, d) = (2, 8);
    let t = 300;
    // Random significands over exponents from below the f16 subnormals to above its range,
    // and exact ties (f16 value plus half an f16 ulp).
    let mut vals: Vec<f32> = (0..t * hk * d)
        .map(|i| {
            let e = rng.below(50) as i32 - 30; // 2^-30 .. 2^19
            let x = (1.0 + rng.uniform().abs()) * 2f32.powi(e);
            let finite = half::f16::from_f32(x).to_f32() < 65504.0;
            let x = if i % 3 == 0 && finite {
                let h = half::f16::from_f32(x);
                let next = half::f16::from_bits(h.to_bits() + 1);
                (h.to_f32() + next.to_f32()) * 0.5 // exact in f32
            } else {
                x
            };
            if i % 2 == 0 { -x } else { x }
        })
        .collect();
    vals[0] = 65520.0;
    vals[1] = 65519.99;
    vals[2] = 2f32.powi(-25);
    vals[3] = 1.5 * 2f32.powi(-24);
    let slots: Vec<u32> = (0..t as u32).rev().collect();
    fn write<B: Backend>(be: &B, vals: &[f32], slots: &[u32], hk: usize, d: usize) -> Vec<f32> {
        let t = slots.len();
        let k = be
            .from_f32(vals, [t, hk, d].as_slice().into(), DType::F32)
            .unwrap();
        let shape: &[usize] = &[t, hk, 1, d];
        let mut kc = be.zeros(shape.into(), DType::F16).unwrap();
        let mut vc = be.zeros(shape.into(), DType::F16).unwrap();
        let s = be.from_u32(slots, [t].as_slice().into()).unwrap();
        be.kv_write(&k, &k, &mut kc, &mut vc, &s).unwrap();
        let (a, b) = (be.to_f32(&kc).unwrap(), be.to_f32(&vc).unwrap());
        assert_eq!(
            a.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
        a
    }
    let got = write(&gpu, &vals, &slots, hk, d);
    let want = write(&cpu, &vals, &slots, hk, d);
    assert_bits(&got, &want, "f16 cache");
    assert!(want.iter().any(|x| x.is_infinite()) && want.contains(&0.0));
}

/// An f16 cache on the GPU is close to the f32 cache (2e-3: K and V rounded to f16), and
/// an odd head dim, which f16 words cannot hold row by row, is an error, not garbage.
#[test]
fn f16_cache_close_to_f32_cache() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::new(16);
    let geo = Geo::new(8, 2, 64, 16);
    let lens = [300, 37, 1];
    let scene = Scene::new(&mut rng, geo, &lens);
    let writes: Vec<_> = (0..lens.len()).map(|s| (s, 0..lens[s])).collect();
    let reads = [(0, 300, 20), (1, 37, 1), (2, 1, 1)];
    let (full, _, _) = run(&gpu, &scene, &writes, &reads, None, F32_AUTO);
    let half_mode = Mode {
        cache: DType::F16,
        split: AttentionSplit::Auto,
    };
    let (half, _, _) = run(&gpu, &scene, &writes, &reads, None, half_mode);
    assert_close(&half, &full, 2e-3, "f16 vs f32 cache");
    assert!(
        half.iter().zip(&full).any(|(a, b)| a != b),
        "f16 rounding had no effect"
    );

    let shape: &[usize] = &[2, 1, 4, 3];
    let mut kc = gpu.zeros(shape.into(), DType::F16).unwrap();
    let mut vc = gpu.zeros(shape.into(), DType::F16).unwrap();
    let k = g32(&gpu, &[0.5; 6], &[2, 1, 3]);
    let slots = gu(&gpu, &[0, 1], &[2]);
    assert!(gpu.kv_write(&k, &k, &mut kc, &mut vc, &slots).is_err());
}
