//! The fused verbs (`matmul_add`, `matmul_silu_mul`, `rope_kv_write`) on the GPU against
//! the CPU reference on random inputs, outputs poisoned first (see `common`), and against
//! their own definitions on the GPU, bitwise: each fused kernel performs the operations of
//! the verbs it replaces, so the fused and unfused GPU results are the same bits (which is
//! also what keeps a row's result independent of the batch when the launcher falls back to
//! the unfused kernels for large T).
//!
//! Tolerances: matmul_add 2^-20 · Σ_k |x_k w_k| + 1e-6 · (1 + |residual|) (the sum of a
//! product and a residual that may cancel it: the error scales with the terms, not the
//! result); matmul_silu_mul 1e-5 · (1 + |gate|) · (1 + |up|) per element (the CPU's gate
//! and up: an error in either is scaled by the other and by silu's slope, at most 1.1);
//! rope_kv_write 1e-5 on q and f32 caches (inputs in [-1, 1]), one f16 rounding step
//! (2^-10 relative) on f16 caches, where a value rounded on either side of a tie may land
//! one ulp apart.

mod common;

use common::*;
use ingot_backend_cpu::CpuBackend;
use ingot_tensor::{Backend, DType, QkvHeads, RopeStyle, Shape, Tensor};

const DTYPES: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

/// x [T, K], W [N, K], the optional bias [N] and the residual [T, N], as host values.
type MatmulAddInputs<'a> = (&'a [f32], &'a [f32], Option<&'a [f32]>, &'a [f32]);

/// `residual += x W^T + b` on `be`; returns the updated residual.
fn matmul_add_on<B: Backend>(
    be: &B,
    (x, w, b, r): MatmulAddInputs<'_>,
    (t, k, n): (usize, usize, usize),
    dtype: DType,
) -> Vec<f32> {
    let up = |v: &[f32], dims: &[usize]| be.from_f32(v, Shape::new(dims), DType::F32).unwrap();
    let wt = be.from_f32(w, Shape::new([n, k]), dtype).unwrap();
    let bias = b.map(|b| up(b, &[n]));
    let mut res = up(r, &[t, n]);
    be.matmul_add(&up(x, &[t, k]), &wt, bias.as_ref(), &mut res)
        .unwrap();
    assert_eq!(res.dims(), &[t, n]);
    be.to_f32(&res).unwrap()
}

#[test]
fn matmul_add_matches_cpu_and_matmul_then_add() {
    let Some(gpu) = gpu() else { return };
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(21);
    // Every SIMT kernel: scalar GEMV (K % 8 != 0), gemv_wide (T <= 4), gemv_wide2, the
    // 64x64 GEMM and the 128x128 GEMM (T = 300, N = 2000).
    for (t, k, n) in [
        (1, 896, 67),
        (3, 129, 250),
        (7, 264, 300),
        (2, 4864, 33),
        (70, 257, 96),
        (300, 136, 2000),
    ] {
        let (x, w, b, r) = (rng.vec(t * k), rng.vec(n * k), rng.vec(n), rng.vec(t * n));
        for dtype in DTYPES {
            for bias in [None, Some(&b[..])] {
                let what = format!("T={t} K={k} N={n} {dtype} bias={}", bias.is_some());
                let g = matmul_add_on(&gpu, (&x, &w, bias, &r), (t, k, n), dtype);
                let c = matmul_add_on(&cpu, (&x, &w, bias, &r), (t, k, n), dtype);
                // Relative to the terms' scale: the residual may cancel the product.
                for (e, (&got, &want)) in g.iter().zip(&c).enumerate() {
                    let (row, col) = (e / n, e % n);
                    let terms: f32 = (0..k)
                        .map(|j| (x[row * k + j] * w[col * k + j]).abs())
                        .sum();
                    let bound = terms * 2f32.powi(-20) + 1e-6 * (1.0 + r[e].abs());
                    assert!(
                        (got - want).abs() <= bound,
                        "{what}: element {e}: got {got}, want {want} (bound {bound:e})"
                    );
                }
                // The definition on the same backend: add(residual, matmul(x, w, b)).
                let wt = gpu.from_f32(&w, Shape::new([n, k]), dtype).unwrap();
                let bt = bias.map(|b| g32(&gpu, b, &[n]));
                let y = gpu
                    .matmul(&g32(&gpu, &x, &[t, k]), &wt, bt.as_ref())
                    .unwrap();
                let sum = gpu.add(&g32(&gpu, &r, &[t, n]), &y).unwrap();
                assert_bits(&g, &gpu.to_f32(&sum).unwrap(), &what);
            }
        }
    }
}

#[test]
fn matmul_add_on_split_weights_matches_whole() {
    let (Some(gpu), Some(split)) = (gpu(), gpu_split()) else {
        return;
    };
    let mut rng = Rng::new(22);
    // 4 KiB parts: W [300, 64] f32 is 19 parts.
    let (t, k, n) = (3, 64, 300);
    let (x, w, b, r) = (rng.vec(t * k), rng.vec(n * k), rng.vec(n), rng.vec(t * n));
    let whole = matmul_add_on(&gpu, (&x, &w, Some(&b), &r), (t, k, n), DType::F32);
    let parts = matmul_add_on(&split, (&x, &w, Some(&b), &r), (t, k, n), DType::F32);
    assert_bits(&parts, &whole, "split W");
}

/// `silu(x Wg^T) * (x Wu^T)` on `be` for W = [gate | up] [2I, K].
fn silu_on<B: Backend>(
    be: &B,
    x: &[f32],
    w: &[f32],
    (t, k, i): (usize, usize, usize),
    dtype: DType,
) -> Vec<f32> {
    let wt = be.from_f32(w, Shape::new([2 * i, k]), dtype).unwrap();
    let xt = be.from_f32(x, Shape::new([t, k]), DType::F32).unwrap();
    let y = be.matmul_silu_mul(&xt, &wt).unwrap();
    assert_eq!(y.dims(), &[t, i]);
    be.to_f32(&y).unwrap()
}

#[test]
fn matmul_silu_mul_matches_cpu_and_is_batch_invariant() {
    let Some(gpu) = gpu() else { return };
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(23);
    // Fused (gemv_wide2 in its gate/up mode: T <= 64, K % 8 == 0; one and several rounds
    // of chunk lanes, an odd I, a short last chunk) and unfused (K % 8 != 0; T > 64).
    for (t, k, i) in [
        (1, 896, 300),
        (4, 136, 33),
        (16, 4864, 40),
        (64, 264, 17),
        (3, 100, 20),
        (100, 256, 24),
    ] {
        let (x, w) = (rng.vec(t * k), rng.vec(2 * i * k));
        for dtype in DTYPES {
            let what = format!("T={t} K={k} I={i} {dtype}");
            let g = silu_on(&gpu, &x, &w, (t, k, i), dtype);
            let c = silu_on(&cpu, &x, &w, (t, k, i), dtype);
            let cw = cpu.from_f32(&w, Shape::new([2 * i, k]), dtype).unwrap();
            let gate_up = cpu
                .to_f32(&cpu.matmul(&c32(&cpu, &x, &[t, k]), &cw, None).unwrap())
                .unwrap();
            let tol = 1e-5 * (k as f32 / 1024.0).sqrt().max(1.0);
            for (e, (&got, &want)) in g.iter().zip(&c).enumerate() {
                let (row, col) = (e / i, e % i);
                let gate = gate_up[row * 2 * i + col].abs();
                let up = gate_up[row * 2 * i + i + col].abs();
                let bound = tol * (1.0 + gate) * (1.0 + up);
                assert!(
                    (got - want).abs() <= bound,
                    "{what}: element {e}: got {got}, want {want} (bound {bound:e})"
                );
            }
            // The definition on the GPU: silu_mul(matmul(x, w)), bit for bit.
            let gw = gpu.from_f32(&w, Shape::new([2 * i, k]), dtype).unwrap();
            let gate_up = gpu.matmul(&g32(&gpu, &x, &[t, k]), &gw, None).unwrap();
            let unfused = gpu.to_f32(&gpu.silu_mul(&gate_up).unwrap()).unwrap();
            assert_bits(&g, &unfused, &format!("{what}: fused vs unfused"));
            // A row alone and in a batch of 70 (the unfused path) give the same bits.
            let alone = silu_on(&gpu, &x[..k], &w, (1, k, i), dtype);
            assert_bits(&alone, &g[..i], &format!("{what}: row 0 alone"));
        }
    }
    let (t, k, i) = (70, 896, 40);
    let (x, w) = (rng.vec(t * k), rng.vec(2 * i * k));
    let batch = silu_on(&gpu, &x, &w, (t, k, i), DType::F16);
    for r in [0, 33, 69] {
        let alone = silu_on(&gpu, &x[r * k..(r + 1) * k], &w, (1, k, i), DType::F16);
        assert_bits(
            &alone,
            &batch[r * i..(r + 1) * i],
            &format!("row {r} of 70"),
        );
    }
}

/// What rope_kv_write leaves behind: q [T, Hq, D] and both caches, as f32.
struct RopeKvOut {
    q: Vec<f32>,
    k_cache: Vec<f32>,
    v_cache: Vec<f32>,
}

/// The scene of one rope_kv_write call.
struct RopeKvCase {
    heads: QkvHeads,
    qkv: Vec<f32>,
    positions: Vec<u32>,
    inv_freq: Vec<f32>,
    slots: Vec<u32>,
    style: RopeStyle,
    cache_dims: [usize; 4],
    cache_dtype: DType,
}

impl RopeKvCase {
    fn tokens(&self) -> usize {
        self.positions.len()
    }

    /// Caches filled with a value no write produces, so untouched slots are checked too.
    fn caches<B: Backend>(&self, be: &B) -> (Tensor<B>, Tensor<B>) {
        let n: usize = self.cache_dims.iter().product();
        let fill = vec![7.0; n];
        let c = |_| {
            be.from_f32(&fill, Shape::new(self.cache_dims), self.cache_dtype)
                .unwrap()
        };
        (c(0), c(1))
    }

    fn fused<B: Backend>(&self, be: &B) -> RopeKvOut {
        let t = self.tokens();
        let (mut kc, mut vc) = self.caches(be);
        let qkv = be
            .from_f32(&self.qkv, Shape::new([t, self.heads.row()]), DType::F32)
            .unwrap();
        let half = self.inv_freq.len();
        let q = be
            .rope_kv_write(
                &qkv,
                self.heads,
                &be.from_u32(&self.positions, Shape::new([t])).unwrap(),
                &be.from_f32(&self.inv_freq, Shape::new([half]), DType::F32)
                    .unwrap(),
                self.style,
                &mut kc,
                &mut vc,
                &be.from_u32(&self.slots, Shape::new([t])).unwrap(),
            )
            .unwrap();
        assert_eq!(q.dims(), &[t, self.heads.num_heads, self.heads.head_dim]);
        // qkv is only read.
        assert_bits(&be.to_f32(&qkv).unwrap(), &self.qkv, "qkv unchanged");
        RopeKvOut {
            q: be.to_f32(&q).unwrap(),
            k_cache: be.to_f32(&kc).unwrap(),
            v_cache: be.to_f32(&vc).unwrap(),
        }
    }

    /// The definition: the stacked rows cut on the host, then rope and kv_write.
    fn unfused<B: Backend>(&self, be: &B) -> RopeKvOut {
        let t = self.tokens();
        let QkvHeads {
            num_heads: hq,
            num_kv_heads: hk,
            head_dim: d,
        } = self.heads;
        let (mut q, mut k, mut v) = (Vec::new(), Vec::new(), Vec::new());
        for row in self.qkv.chunks(self.heads.row()) {
            q.extend_from_slice(&row[..hq * d]);
            k.extend_from_slice(&row[hq * d..(hq + hk) * d]);
            v.extend_from_slice(&row[(hq + hk) * d..]);
        }
        let up = |v: &[f32], h: usize| be.from_f32(v, Shape::new([t, h, d]), DType::F32).unwrap();
        let (mut q, mut k, v) = (up(&q, hq), up(&k, hk), up(&v, hk));
        let half = self.inv_freq.len();
        be.rope(
            &mut q,
            &mut k,
            &be.from_u32(&self.positions, Shape::new([t])).unwrap(),
            &be.from_f32(&self.inv_freq, Shape::new([half]), DType::F32)
                .unwrap(),
            self.style,
        )
        .unwrap();
        let (mut kc, mut vc) = self.caches(be);
        let slots = be.from_u32(&self.slots, Shape::new([t])).unwrap();
        be.kv_write(&k, &v, &mut kc, &mut vc, &slots).unwrap();
        RopeKvOut {
            q: be.to_f32(&q).unwrap(),
            k_cache: be.to_f32(&kc).unwrap(),
            v_cache: be.to_f32(&vc).unwrap(),
        }
    }
}

#[test]
fn rope_kv_write_matches_cpu_and_rope_then_kv_write() {
    let Some(gpu) = gpu() else { return };
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(24);
    for style in [RopeStyle::Neox, RopeStyle::Interleaved] {
        for cache_dtype in [DType::F32, DType::F16] {
            // (T, Hq, Hk, D, rotated dims, block size, blocks): GQA 7 and 4, MHA, partial
            // rotary, no rotation, odd block size.
            for (t, hq, hk, d, rot, bs, blocks) in [
                (1, 14, 2, 64, 64, 16, 4),
                (37, 8, 2, 64, 32, 16, 5),
                (5, 7, 1, 10, 6, 5, 3),
                (3, 2, 2, 16, 0, 4, 2),
                (4, 4, 4, 128, 128, 16, 1),
            ] {
                let heads = QkvHeads {
                    num_heads: hq,
                    num_kv_heads: hk,
                    head_dim: d,
                };
                // Distinct slots in a shuffled order.
                let mut free: Vec<u32> = (0..(bs * blocks) as u32).collect();
                let slots = (0..t)
                    .map(|_| free.swap_remove(rng.below(free.len())))
                    .collect();
                let case = RopeKvCase {
                    heads,
                    qkv: rng.vec(t * heads.row()),
                    // Up to 200k: the angle reduction must hold far beyond [-pi, pi].
                    positions: (0..t).map(|_| rng.below(200_000) as u32).collect(),
                    inv_freq: ingot_testkit::reference::inv_freq(1e6, rot),
                    slots,
                    style,
                    cache_dims: [blocks, hk, bs, d],
                    cache_dtype,
                };
                let what = format!("{style:?} {cache_dtype} T={t} Hq={hq} Hk={hk} D={d} R={rot}");
                let g = case.fused(&gpu);
                let c = case.fused(&cpu);
                assert_close(&g.q, &c.q, 1e-5, &format!("{what}: q"));
                let cache_tol = if cache_dtype == DType::F16 {
                    1e-3
                } else {
                    1e-5
                };
                assert_close(&g.k_cache, &c.k_cache, cache_tol, &format!("{what}: k"));
                assert_bits(&g.v_cache, &c.v_cache, &format!("{what}: v"));
                let u = case.unfused(&gpu);
                assert_bits(&g.q, &u.q, &format!("{what}: q vs rope"));
                assert_bits(
                    &g.k_cache,
                    &u.k_cache,
                    &format!("{what}: k vs rope + kv_write"),
                );
                assert_bits(&g.v_cache, &u.v_cache, &format!("{what}: v vs kv_write"));
                let cu = case.unfused(&cpu);
                assert_bits(&c.q, &cu.q, &format!("{what}: cpu q"));
                assert_bits(&c.k_cache, &cu.k_cache, &format!("{what}: cpu k"));
            }
        }
    }
}

#[test]
fn rope_kv_write_skips_slots_outside_the_cache() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::new(25);
    let heads = QkvHeads {
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 8,
    };
    let case = RopeKvCase {
        heads,
        qkv: rng.vec(2 * heads.row()),
        positions: vec![3, 9],
        inv_freq: ingot_testkit::reference::inv_freq(1e4, 8),
        slots: vec![5, 1000],
        style: RopeStyle::Neox,
        cache_dims: [2, 2, 4, 8],
        cache_dtype: DType::F16,
    };
    let out = case.fused(&gpu);
    // Token 1's queries are still rotated; its keys and values go nowhere.
    let alone = RopeKvCase {
        qkv: case.qkv[..heads.row()].to_vec(),
        positions: vec![3],
        slots: vec![5],
        ..case
    };
    let first = alone.fused(&gpu);
    assert_bits(&out.k_cache, &first.k_cache, "k cache");
    assert_bits(&out.v_cache, &first.v_cache, "v cache");
    assert_bits(&out.q[..32], &first.q, "token 0's q");
    assert!(out.q[32..].iter().all(|v| v.is_finite()), "token 1's q");
}
