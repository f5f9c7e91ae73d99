//! Conformance of kv_write and paged_attention on [`crate::paged`] scenes: several
//! sequences of odd lengths whose blocks are scattered over a shuffled pool, caches filled
//! with NaN first (so a read of any slot not written poisons the output), decode rows and
//! prefill chunks mixed in one call, GQA, odd head dims and block sizes, sliding windows.

use std::ops::Range;

use ingot_tensor::{AttentionMeta, AttentionParams, Backend, DType, Shape, Tensor};

use super::{assert_bits, assert_close, f32t, u32t};
use crate::paged::{Geo, KvRows, Queries, Scene, Seq};
use crate::{Rng, reference};

/// A scene's K and V caches on a backend, written and read through the verbs.
pub struct Paged<'a, B: Backend> {
    pub be: &'a B,
    pub scene: &'a Scene,
    pub k_cache: Tensor<B>, // [num_blocks, Hk, bs, D]
    pub v_cache: Tensor<B>, // [num_blocks, Hk, bs, D]
}

impl<'a, B: Backend> Paged<'a, B> {
    /// Caches of `dtype` full of NaN: unwritten slots poison any output that reads them.
    pub fn new(be: &'a B, scene: &'a Scene, dtype: DType) -> Self {
        let shape = scene.cache_shape();
        let nan = vec![f32::NAN; shape.iter().product()];
        let make = || be.from_f32(&nan, Shape::new(shape), dtype).unwrap();
        Self {
            be,
            scene,
            k_cache: make(),
            v_cache: make(),
        }
    }

    /// kv_write of tokens `range` of each listed sequence, in one call.
    pub fn write(&mut self, parts: &[(usize, Range<usize>)]) {
        let (be, g) = (self.be, self.scene.geo);
        let KvRows { k, v, slots } = self.scene.kv_rows(parts);
        let t = slots.len();
        let (kt, vt) = (f32t(be, &k, &[t, g.hk, g.d]), f32t(be, &v, &[t, g.hk, g.d]));
        let st = u32t(be, &slots, &[t]);
        be.kv_write(&kt, &vt, &mut self.k_cache, &mut self.v_cache, &st)
            .unwrap();
    }

    /// paged_attention for `(sequence, context length, query count)` triples, block tables
    /// padded with one spare column of `u32::MAX` (reading it would fail).
    pub fn attend(&self, parts: &[(usize, usize, usize)], window: Option<usize>) -> Vec<f32> {
        self.attend_with(parts, window, 1, |be, q, kc, vc, meta, params| {
            be.paged_attention(q, kc, vc, meta, params).unwrap()
        })
    }

    /// [`Paged::attend`] with `spare` padding columns, through `attention` (a backend's
    /// own entry point, e.g. one that forces a kernel path).
    pub fn attend_with(
        &self,
        parts: &[(usize, usize, usize)],
        window: Option<usize>,
        spare: usize,
        attention: impl FnOnce(
            &B,
            &Tensor<B>,
            &Tensor<B>,
            &Tensor<B>,
            &AttentionMeta<'_, B>,
            AttentionParams,
        ) -> Tensor<B>,
    ) -> Vec<f32> {
        let (be, g) = (self.be, self.scene.geo);
        let Queries {
            q,
            tables,
            lens,
            qsl,
            max_blocks,
        } = self.scene.queries(parts, spare);
        let (s, t) = (lens.len(), *qsl.last().unwrap() as usize);
        let (bt, sl, ql) = (
            u32t(be, &tables, &[s, max_blocks]),
            u32t(be, &lens, &[s]),
            u32t(be, &qsl, &[s + 1]),
        );
        let meta = AttentionMeta {
            block_tables: &bt,
            seq_lens: &sl,
            query_start_loc: &ql,
            max_seq_len: lens.iter().copied().max().unwrap_or(0) as usize,
        };
        let params = AttentionParams {
            scale: 1.0 / (g.d as f32).sqrt(),
            sliding_window: window,
        };
        let out = attention(
            be,
            &f32t(be, &q, &[t, g.hq, g.d]),
            &self.k_cache,
            &self.v_cache,
            &meta,
            params,
        );
        assert_eq!(out.dims(), &[t, g.hq, g.d]);
        be.to_f32(&out).unwrap()
    }

    /// Both caches read back, widened to f32.
    pub fn caches(&self) -> (Vec<f32>, Vec<f32>) {
        let be = self.be;
        (
            be.to_f32(&self.k_cache).unwrap(),
            be.to_f32(&self.v_cache).unwrap(),
        )
    }
}

/// Decode rows (q_len 1) and prefill chunks (q_len > 1 after earlier context) mixed:
/// `(context length, query count)`.
const MIX: [(usize, usize); 7] = [
    (1, 1),
    (17, 1),
    (40, 40),
    (100, 7),
    (33, 1),
    (64, 20),
    (5, 3),
];

/// Every token of every sequence of `lens`.
fn whole(lens: &[usize]) -> Vec<(usize, Range<usize>)> {
    lens.iter().enumerate().map(|(s, &l)| (s, 0..l)).collect()
}

/// MIX's reads, sequence by sequence.
fn mix_reads() -> Vec<(usize, usize, usize)> {
    MIX.iter()
        .enumerate()
        .map(|(s, &(l, q))| (s, l, q))
        .collect()
}

fn mix_lens() -> Vec<usize> {
    MIX.iter().map(|m| m.0).collect()
}

/// Against plain contiguous causal attention in f64, within 1e-5 (q, k, v in [-1, 1):
/// outputs are convex combinations of V rows), with and without a window.
pub fn attention_matches_reference<B: Backend>(be: &B) {
    let mut rng = Rng::new(10);
    for geo in [
        Geo::new(8, 2, 64, 16),
        Geo::new(8, 2, 36, 5),
        Geo::new(4, 4, 16, 7),
        Geo::new(9, 3, 64, 16),
        Geo::new(7, 1, 40, 5),
        Geo::new(4, 1, 256, 16),
    ] {
        let lens = mix_lens();
        let scene = Scene::new(&mut rng, geo, &lens);
        let mut paged = Paged::new(be, &scene, DType::F32);
        paged.write(&whole(&lens));
        let reads = mix_reads();
        for window in [None, Some(10), Some(1)] {
            let what = format!("{geo:?} window {window:?}");
            let want = reference::attention(&scene, &reads, window);
            assert_close(&paged.attend(&reads, window), &want, 1e-5, &what);
        }
    }
}

/// A sequence's rows are bit-identical alone or among others, and a prompt processed whole
/// equals the same prompt in two chunks (kv_write between, batched with another
/// sequence's decode row) followed by a decode step.
pub fn attention_is_batch_invariant<B: Backend>(be: &B) {
    let mut rng = Rng::new(12);
    let geo = Geo::new(8, 2, 64, 16);
    let lens = mix_lens();
    let scene = Scene::new(&mut rng, geo, &lens);
    let mut paged = Paged::new(be, &scene, DType::F32);
    paged.write(&whole(&lens));
    let reads = mix_reads();
    let batched = paged.attend(&reads, None);
    let row = geo.hq * geo.d;
    let mut offset = 0;
    for &part in &reads {
        let alone = paged.attend(&[part], None);
        let what = format!("sequence {} alone vs batched", part.0);
        assert_bits(&alone, &batched[offset..offset + part.2 * row], &what);
        offset += part.2 * row;
    }

    for geo in [Geo::new(8, 2, 64, 16), Geo::new(6, 3, 20, 3)] {
        let scene = Scene::new(&mut rng, geo, &[71, 30]);
        let row = geo.hq * geo.d;
        for window in [None, Some(40)] {
            let mut w = Paged::new(be, &scene, DType::F32);
            w.write(&[(0, 0..71)]);
            let whole = w.attend(&[(0, 71, 71)], window);
            let want = reference::attention(&scene, &[(0, 71, 71)], window);
            assert_close(&whole, &want, 1e-5, "whole prompt");

            let mut c = Paged::new(be, &scene, DType::F32);
            c.write(&[(1, 0..29)]);
            c.write(&[(0, 0..23)]);
            let first = c.attend(&[(0, 23, 23)], window);
            c.write(&[(1, 29..30), (0, 23..70)]);
            let second = c.attend(&[(1, 30, 1), (0, 70, 47)], window);
            c.write(&[(0, 70..71)]);
            let decode = c.attend(&[(0, 71, 1)], window);

            let what = format!("{geo:?} window {window:?}");
            assert_bits(&first, &whole[..23 * row], &format!("{what}: first chunk"));
            let rows = &whole[23 * row..70 * row];
            assert_bits(&second[row..], rows, &format!("{what}: second chunk"));
            assert_bits(&decode, &whole[70 * row..], &format!("{what}: decode step"));
        }
    }
}

/// kv_write stores each token's K and V rows at its slot and touches nothing else.
pub fn kv_write_fills_exactly_the_mapped_slots<B: Backend>(be: &B) {
    let mut rng = Rng::new(11);
    let geo = Geo::new(4, 2, 12, 5);
    let scene = Scene::new(&mut rng, geo, &[13, 4]);
    let mut paged = Paged::new(be, &scene, DType::F32);
    let writes = [(0usize, 3..11), (1, 0..4)];
    paged.write(&writes);
    let (kc, vc) = paged.caches();
    let mut written = vec![false; kc.len()];
    for (s, range) in writes {
        let seq = &scene.seqs[s];
        for p in range {
            for h in 0..geo.hk {
                let block = seq.table[p / geo.bs] as usize;
                let at = ((block * geo.hk + h) * geo.bs + p % geo.bs) * geo.d;
                let src = (p * geo.hk + h) * geo.d;
                let what = format!("seq {s} pos {p} head {h}");
                assert_bits(&kc[at..at + geo.d], &seq.k[src..src + geo.d], &what);
                assert_bits(&vc[at..at + geo.d], &seq.v[src..src + geo.d], &what);
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

/// `x` rounded to the nearest f16 (ties to even) and widened back.
fn round_f16(x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect()
}

/// The same scene with every K and V value rounded to f16 (q and tables unchanged).
fn rounded_kv(scene: &Scene) -> Scene {
    let seqs = scene
        .seqs
        .iter()
        .map(|s| Seq {
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

/// f16 caches: kv_write stores exactly the rounded values (and nothing else); attention
/// over them is bit-identical to an f32 cache of the rounded values, within 1e-5 of their
/// f64 reference and within 2e-3 of the unrounded one.
pub fn f16_cache_is_the_f32_cache_of_rounded_values<B: Backend>(be: &B) {
    let mut rng = Rng::new(15);
    for geo in [
        Geo::new(8, 2, 64, 16),
        Geo::new(6, 3, 20, 3),
        Geo::new(5, 1, 32, 7),
    ] {
        let lens = mix_lens();
        let scene = Scene::new(&mut rng, geo, &lens);
        let rounded = rounded_kv(&scene);
        let mut half_c = Paged::new(be, &scene, DType::F16);
        half_c.write(&whole(&lens));
        let mut f32_c = Paged::new(be, &rounded, DType::F32);
        f32_c.write(&whole(&lens));
        assert_eq!(half_c.k_cache.dtype(), DType::F16);
        let what = format!("{geo:?}");
        let ((hk, hv), (fk, fv)) = (half_c.caches(), f32_c.caches());
        assert_bits(&hk, &fk, &format!("{what}: k cache"));
        assert_bits(&hv, &fv, &format!("{what}: v cache"));
        let reads = mix_reads();
        for window in [None, Some(10)] {
            let what = format!("{what} window {window:?}");
            let got = half_c.attend(&reads, window);
            assert_bits(&got, &f32_c.attend(&reads, window), &what);
            let want = reference::attention(&rounded, &reads, window);
            assert_close(&got, &want, 1e-5, &what);
            let unrounded = reference::attention(&scene, &reads, window);
            assert_close(&got, &unrounded, 2e-3, &what);
        }
    }
}

/// f16 kv_write rounds to nearest even: hand-picked ties, overflow to infinity, f16
/// subnormals and values that round to zero, against their exact f16 encodings.
pub fn f16_kv_write_rounds_to_nearest_even<B: Backend>(be: &B) {
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
    // Head dim 2 (an f16 cache needs an even one), both elements the same value.
    let n = cases.len();
    let vals: Vec<f32> = cases.iter().flat_map(|c| [c.0, c.0]).collect();
    let k = f32t(be, &vals, &[n, 1, 2]);
    let slots: Vec<u32> = (0..n as u32).collect();
    let mut kc = be.zeros(Shape::new([n, 1, 1, 2]), DType::F16).unwrap();
    let mut vc = be.zeros(Shape::new([n, 1, 1, 2]), DType::F16).unwrap();
    be.kv_write(&k, &k, &mut kc, &mut vc, &u32t(be, &slots, &[n]))
        .unwrap();
    let got: Vec<u32> = be
        .to_f32(&kc)
        .unwrap()
        .iter()
        .map(|x| x.to_bits())
        .collect();
    let want: Vec<u32> = cases
        .iter()
        .flat_map(|c| {
            let w = half::f16::from_bits(c.1).to_f32().to_bits();
            [w, w]
        })
        .collect();
    assert_eq!(got, want);
}
