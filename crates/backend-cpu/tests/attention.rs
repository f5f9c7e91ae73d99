//! kv_write + paged_attention against plain contiguous causal attention (f64), and the
//! batch invariance of attention (bit-identical rows alone vs batched, whole prompt vs
//! chunked prefill + decode, any thread count, SIMD vs portable build).
//!
//! Tolerance: |got − ref| ≤ 1e-5 with q, k, v uniform in [-1, 1) (outputs are convex
//! combinations of V rows, so this is 1e-5 relative to the V scale). Caches start filled
//! with NaN, so reading any slot that was not written shows up as NaN in the output.
//!
//! f16 caches: kv_write must store exactly the round-to-nearest-even f16 of each value, and
//! attention over an f16 cache must be bit-identical to attention over an f32 cache holding
//! those rounded values (the widening is exact and the math is shared); against the f64
//! reference of the unrounded values it is within 2e-3 (K and V rounding: relative 2^-11
//! per element, a few 1e-4 on the outputs).

mod common;

use common::*;
use ingot_backend_cpu::CpuBackend;
use ingot_tensor::{AttentionMeta, AttentionParams, Backend, DType, Shape};
use ingot_testkit::paged::{Geo, KvRows, Queries, Scene};
use ingot_testkit::reference;

/// CPU-side operations on a testkit scene.
trait CpuScene {
    fn caches(&self, be: &CpuBackend) -> (T, T);
    fn write(
        &self,
        be: &CpuBackend,
        caches: &mut (T, T),
        parts: &[(usize, std::ops::Range<usize>)],
    );
    fn attend(
        &self,
        be: &CpuBackend,
        caches: &(T, T),
        parts: &[(usize, usize, usize)],
        window: Option<usize>,
    ) -> Vec<f32>;
    fn reference(&self, parts: &[(usize, usize, usize)], window: Option<usize>) -> Vec<f64>;
}

impl CpuScene for Scene {
    /// Caches full of NaN: unwritten slots poison any output that reads them.
    fn caches(&self, be: &CpuBackend) -> (T, T) {
        nan_caches(self, be, DType::F32)
    }

    /// kv_write of tokens `range` of each listed sequence, in one call.
    fn write(
        &self,
        be: &CpuBackend,
        caches: &mut (T, T),
        parts: &[(usize, std::ops::Range<usize>)],
    ) {
        let g = self.geo;
        let KvRows { k, v, slots } = self.kv_rows(parts);
        let t = slots.len();
        let (kt, vt) = (f32t(be, &k, &[t, g.hk, g.d]), f32t(be, &v, &[t, g.hk, g.d]));
        be.kv_write(
            &kt,
            &vt,
            &mut caches.0,
            &mut caches.1,
            &u32t(be, &slots, &[t]),
        )
        .unwrap();
    }

    /// paged_attention for `(sequence, context length, query count)` triples.
    fn attend(
        &self,
        be: &CpuBackend,
        caches: &(T, T),
        parts: &[(usize, usize, usize)],
        window: Option<usize>,
    ) -> Vec<f32> {
        let g = self.geo;
        let row = g.hq * g.d;
        // One spare column of garbage (u32::MAX) entries: reading one would fail.
        let Queries {
            q,
            tables,
            lens,
            qsl,
            max_blocks,
        } = self.queries(parts, 1);
        let t = q.len() / row;
        let s = parts.len();
        let (bt, sl, ql) = (
            u32t(be, &tables, &[s, max_blocks]),
            u32t(be, &lens, &[s]),
            u32t(be, &qsl, &[s + 1]),
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
            .paged_attention(
                &f32t(be, &q, &[t, g.hq, g.d]),
                &caches.0,
                &caches.1,
                &meta,
                params,
            )
            .unwrap();
        assert_eq!(out.dims(), &[t, g.hq, g.d]);
        host(&out)
    }

    /// Plain causal attention in f64 over contiguous K/V, same output layout as `attend`.
    fn reference(&self, parts: &[(usize, usize, usize)], window: Option<usize>) -> Vec<f64> {
        reference::attention(self, parts, window)
    }
}

/// K and V caches of `dtype` full of NaN.
fn nan_caches(scene: &Scene, be: &CpuBackend, dtype: DType) -> (T, T) {
    let shape = scene.cache_shape();
    let nan = vec![f32::NAN; shape.iter().product()];
    let make = || be.from_f32(&nan, Shape::new(shape), dtype).unwrap();
    (make(), make())
}

/// `x` rounded to the nearest f16 (ties to even) and widened back.
fn round_f16(x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect()
}

/// The same scene with every K and V value rounded to f16 (q and tables unchanged).
fn rounded_kv(scene: &Scene) -> Scene {
    let seqs = scene
        .seqs
        .iter()
        .map(|s| ingot_testkit::paged::Seq {
            q: s.q.clone(),
            k: round_f16(&s.k),
            v: round_f16(&s.v),
            table: s.table.clone(),
        })
        .collect();
    Scene {
        geo: scene.geo,
        seqs,
        num_blocks: scene.num_blocks,
    }
}

#[track_caller]
fn assert_close(got: &[f32], want: &[f64], what: &str) {
    assert_close_tol(got, want, 1e-5, what);
}

#[track_caller]
fn assert_close_tol(got: &[f32], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        assert!(err <= tol, "{what}: element {i}: got {g}, want {w}");
    }
}

#[track_caller]
fn assert_bits(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    assert!(
        a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
        "{what}: not bit-identical"
    );
}

/// Decode rows (q_len 1) and prefill chunks (q_len > 1 after earlier context) mixed.
const MIX: [(usize, usize); 7] = [
    (1, 1),
    (17, 1),
    (40, 40),
    (100, 7),
    (33, 1),
    (64, 20),
    (5, 3),
];

#[test]
fn matches_contiguous_attention() {
    let mut rng = Rng::new(10);
    for be in backends() {
        for geo in [
            Geo {
                hq: 8,
                hk: 2,
                d: 64,
                bs: 16,
            },
            Geo {
                hq: 8,
                hk: 2,
                d: 36,
                bs: 5,
            },
            Geo {
                hq: 4,
                hk: 4,
                d: 16,
                bs: 7,
            },
            Geo {
                hq: 9,
                hk: 3,
                d: 64,
                bs: 16,
            },
        ] {
            let lens: Vec<usize> = MIX.iter().map(|m| m.0).collect();
            let scene = Scene::new(&mut rng, geo, &lens);
            let mut caches = scene.caches(&be);
            let all: Vec<_> = lens.iter().enumerate().map(|(s, &l)| (s, 0..l)).collect();
            scene.write(&be, &mut caches, &all);
            let parts: Vec<_> = MIX
                .iter()
                .enumerate()
                .map(|(s, &(l, q))| (s, l, q))
                .collect();
            for window in [None, Some(10), Some(1)] {
                let what = format!(
                    "{:?} hq={} hk={} d={} bs={} window={window:?}",
                    be.isa(),
                    geo.hq,
                    geo.hk,
                    geo.d,
                    geo.bs
                );
                assert_close(
                    &scene.attend(&be, &caches, &parts, window),
                    &scene.reference(&parts, window),
                    &what,
                );
            }
        }
    }
}

#[test]
fn kv_write_fills_exactly_the_mapped_slots() {
    let mut rng = Rng::new(11);
    let be = CpuBackend::new();
    let geo = Geo {
        hq: 4,
        hk: 2,
        d: 12,
        bs: 5,
    };
    let scene = Scene::new(&mut rng, geo, &[13, 4]);
    let mut caches = scene.caches(&be);
    scene.write(&be, &mut caches, &[(0, 3..11), (1, 0..4)]);
    let (kc, vc) = (host(&caches.0), host(&caches.1));
    let mut written = vec![false; kc.len()];
    for (s, range) in [(0usize, 3..11), (1, 0..4)] {
        let seq = &scene.seqs[s];
        for p in range {
            for h in 0..geo.hk {
                let at =
                    ((seq.table[p / geo.bs] as usize * geo.hk + h) * geo.bs + p % geo.bs) * geo.d;
                let src = (p * geo.hk + h) * geo.d;
                assert_eq!(
                    &kc[at..at + geo.d],
                    &seq.k[src..src + geo.d],
                    "k of seq {s} pos {p} head {h}"
                );
                assert_eq!(
                    &vc[at..at + geo.d],
                    &seq.v[src..src + geo.d],
                    "v of seq {s} pos {p} head {h}"
                );
                written[at..at + geo.d].fill(true);
            }
        }
    }
    for (i, w) in written.iter().enumerate() {
        assert!(
            *w || (kc[i].is_nan() && vc[i].is_nan()),
            "slot element {i} was overwritten"
        );
    }
}

/// A sequence's rows are bit-identical computed alone or among other sequences.
#[test]
fn alone_equals_batched() {
    let mut rng = Rng::new(12);
    for be in backends() {
        let geo = Geo {
            hq: 8,
            hk: 2,
            d: 64,
            bs: 16,
        };
        let lens: Vec<usize> = MIX.iter().map(|m| m.0).collect();
        let scene = Scene::new(&mut rng, geo, &lens);
        let mut caches = scene.caches(&be);
        let all: Vec<_> = lens.iter().enumerate().map(|(s, &l)| (s, 0..l)).collect();
        scene.write(&be, &mut caches, &all);
        let parts: Vec<_> = MIX
            .iter()
            .enumerate()
            .map(|(s, &(l, q))| (s, l, q))
            .collect();
        let batched = scene.attend(&be, &caches, &parts, None);
        let row = geo.hq * geo.d;
        let mut offset = 0;
        for &part in &parts {
            let alone = scene.attend(&be, &caches, &[part], None);
            assert_bits(
                &alone,
                &batched[offset..offset + part.2 * row],
                &format!("{:?} sequence {}", be.isa(), part.0),
            );
            offset += part.2 * row;
        }
    }
}

/// A prompt processed whole equals the same prompt in two chunks (with kv_write between,
/// batched with another sequence's decode rows) followed by a decode step, bit for bit.
#[test]
fn chunked_prefill_equals_whole_prompt() {
    let mut rng = Rng::new(13);
    for be in backends() {
        for geo in [
            Geo {
                hq: 8,
                hk: 2,
                d: 64,
                bs: 16,
            },
            Geo {
                hq: 6,
                hk: 3,
                d: 20,
                bs: 3,
            },
        ] {
            let scene = Scene::new(&mut rng, geo, &[71, 30]);
            let row = geo.hq * geo.d;
            for window in [None, Some(40)] {
                // Whole: all 71 tokens at once.
                let mut whole_c = scene.caches(&be);
                scene.write(&be, &mut whole_c, &[(0, 0..71)]);
                let whole = scene.attend(&be, &whole_c, &[(0, 71, 71)], window);
                assert_close(
                    &whole,
                    &scene.reference(&[(0, 71, 71)], window),
                    "whole prompt",
                );

                // Chunked: 23 tokens, then 47 beside seq 1's decode, then one decode step.
                let mut c = scene.caches(&be);
                scene.write(&be, &mut c, &[(1, 0..29)]);
                scene.write(&be, &mut c, &[(0, 0..23)]);
                let first = scene.attend(&be, &c, &[(0, 23, 23)], window);
                scene.write(&be, &mut c, &[(1, 29..30), (0, 23..70)]);
                let second = scene.attend(&be, &c, &[(1, 30, 1), (0, 70, 47)], window);
                scene.write(&be, &mut c, &[(0, 70..71)]);
                let decode = scene.attend(&be, &c, &[(0, 71, 1)], window);

                let what = format!("{:?} d={} bs={} window={window:?}", be.isa(), geo.d, geo.bs);
                assert_bits(&first, &whole[..23 * row], &format!("{what}: first chunk"));
                assert_bits(
                    &second[row..],
                    &whole[23 * row..70 * row],
                    &format!("{what}: second chunk"),
                );
                assert_bits(&decode, &whole[70 * row..], &format!("{what}: decode step"));
            }
        }
    }
}

/// The thread count does not change a bit (the SIMD and portable kernels may differ in the
/// last bits of the scores; both are checked against the reference above).
#[test]
fn independent_of_thread_count() {
    let mut rng = Rng::new(14);
    let geo = Geo {
        hq: 8,
        hk: 2,
        d: 64,
        bs: 16,
    };
    let lens: Vec<usize> = MIX.iter().map(|m| m.0).collect();
    let scene = Scene::new(&mut rng, geo, &lens);
    let parts: Vec<_> = MIX
        .iter()
        .enumerate()
        .map(|(s, &(l, q))| (s, l, q))
        .collect();
    let all: Vec<_> = lens.iter().enumerate().map(|(s, &l)| (s, 0..l)).collect();
    let run = |be: &CpuBackend| {
        let mut c = scene.caches(be);
        scene.write(be, &mut c, &all);
        scene.attend(be, &c, &parts, None)
    };
    let want = run(&CpuBackend::new());
    for be in [
        CpuBackend::with_threads(1).unwrap(),
        CpuBackend::with_threads(5).unwrap(),
    ] {
        assert_bits(&run(&be), &want, &format!("{be:?}"));
    }
    let portable = CpuBackend::new().with_portable_kernels();
    let want = run(&portable);
    let one = CpuBackend::with_threads(1).unwrap().with_portable_kernels();
    assert_bits(&run(&one), &want, "portable, one thread");
}

/// f16 caches: kv_write stores exactly the rounded values (and nothing else), attention is
/// bit-identical to an f32 cache of the rounded values and close to the unrounded reference;
/// mixed prefill chunks and decode rows, GQA, odd head dims and block sizes, windows.
#[test]
fn f16_cache_is_the_f32_cache_of_rounded_values() {
    let mut rng = Rng::new(15);
    for be in backends() {
        for geo in [
            Geo::new(8, 2, 64, 16),
            Geo::new(6, 3, 20, 3),
            Geo::new(5, 1, 33, 7),
        ] {
            let lens: Vec<usize> = MIX.iter().map(|m| m.0).collect();
            let scene = Scene::new(&mut rng, geo, &lens);
            let rounded = rounded_kv(&scene);
            let all: Vec<_> = lens.iter().enumerate().map(|(s, &l)| (s, 0..l)).collect();
            let mut half_c = nan_caches(&scene, &be, DType::F16);
            scene.write(&be, &mut half_c, &all);
            let mut f32_c = rounded.caches(&be);
            rounded.write(&be, &mut f32_c, &all);
            let what = format!("{:?} {geo:?}", be.isa());
            for (h, f) in [(&half_c.0, &f32_c.0), (&half_c.1, &f32_c.1)] {
                assert_eq!(h.dtype(), DType::F16);
                let widened = be.to_f32(h).unwrap();
                for (i, (a, b)) in widened.iter().zip(host(f)).enumerate() {
                    assert!(
                        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                        "{what}: cache element {i}: {a} vs {b}"
                    );
                }
            }
            let parts: Vec<_> = MIX
                .iter()
                .enumerate()
                .map(|(s, &(l, q))| (s, l, q))
                .collect();
            for window in [None, Some(10)] {
                let what = format!("{what} window {window:?}");
                let got = scene.attend(&be, &half_c, &parts, window);
                let same = rounded.attend(&be, &f32_c, &parts, window);
                assert_bits(&got, &same, &what);
                assert_close(&got, &rounded.reference(&parts, window), &what);
                assert_close_tol(&got, &scene.reference(&parts, window), 2e-3, &what);
            }
        }
    }
}

/// Rounding is to nearest even at the f16 grid, with overflow to infinity and f16
/// subnormals kept: checked on hand-picked values against their exact f16 encodings.
#[test]
fn f16_kv_write_rounds_to_nearest_even() {
    let be = CpuBackend::new();
    // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to 1 (even); 1 + 3·2^-11 ties to
    // 1 + 2^-9 (even); 65520 ties to infinity; 2^-25 ties to 0; 3·2^-25 to 2^-23.
    let cases: [(f32, u16); 8] = [
        (1.0 + 2f32.powi(-11), 0x3c00),
        (1.0 + 3.0 * 2f32.powi(-11), 0x3c02),
        (65504.0, 0x7bff),
        (65520.0, 0x7c00),
        (-65519.0, 0xfbff),
        (2f32.powi(-25), 0x0000),
        (3.0 * 2f32.powi(-25), 0x0002),
        (-1.0e-30, 0x8000),
    ];
    let n = cases.len();
    let vals: Vec<f32> = cases.iter().map(|c| c.0).collect();
    let k = f32t(&be, &vals, &[n, 1, 1]);
    let slots: Vec<u32> = (0..n as u32).collect();
    let mut kc = be.zeros(Shape::new([n, 1, 1, 1]), DType::F16).unwrap();
    let mut vc = be.zeros(Shape::new([n, 1, 1, 1]), DType::F16).unwrap();
    be.kv_write(&k, &k, &mut kc, &mut vc, &u32t(&be, &slots, &[n]))
        .unwrap();
    let bits: Vec<u16> = kc
        .storage()
        .as_f16()
        .unwrap()
        .iter()
        .map(|h| h.to_bits())
        .collect();
    let want: Vec<u16> = cases.iter().map(|c| c.1).collect();
    assert_eq!(bits, want);
}

#[test]
fn supported_cache_dtypes() {
    let be = CpuBackend::new();
    assert!(be.supports(ingot_tensor::Op::KvWrite, DType::F16));
    assert!(be.supports(ingot_tensor::Op::PagedAttention, DType::F16));
    assert!(!be.supports(ingot_tensor::Op::KvWrite, DType::BF16));
    // f16 activations are not accepted (the cache may be f16, k and v are f32).
    let k = be
        .from_f32(&[0.5; 8], Shape::new([2, 1, 4]), DType::F16)
        .unwrap();
    let mut kc = be.zeros(Shape::new([2, 1, 4, 4]), DType::F16).unwrap();
    let mut vc = be.zeros(Shape::new([2, 1, 4, 4]), DType::F16).unwrap();
    let slots = u32t(&be, &[0, 1], &[2]);
    assert!(be.kv_write(&k, &k, &mut kc, &mut vc, &slots).is_err());
}

#[test]
#[should_panic(expected = "KV cache dtype bf16")]
fn bf16_cache_is_rejected_by_the_checks() {
    let be = CpuBackend::new();
    let k = f32t(&be, &[0.5; 8], &[2, 1, 4]);
    let mut kc = be.zeros(Shape::new([2, 1, 4, 4]), DType::BF16).unwrap();
    let mut vc = be.zeros(Shape::new([2, 1, 4, 4]), DType::BF16).unwrap();
    let slots = u32t(&be, &[0, 1], &[2]);
    let _ = be.kv_write(&k, &k, &mut kc, &mut vc, &slots);
}
