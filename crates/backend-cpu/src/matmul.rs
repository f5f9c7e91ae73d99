//! `x [T, K] · W[N, K]ᵀ (+ bias [N]) -> [T, N]`: the hot loop of the engine (decode is a
//! GEMV over every weight, prefill a GEMM).
//!
//! Batch invariance (DESIGN.md §5) is the first requirement, speed the second. Each output
//! element is one dot product of an x row with a W row, reduced in the crate's fixed order
//! (`lanes.rs`: eight lanes over k, zero-padded tail, fixed tree), then `+ bias`. Nothing
//! else touches the element: there is no split-K and no blocking over K, so its value
//! depends on K and the two rows only. A general GEMM library (the `gemm` crate, BLAS)
//! picks its blocking and its K-splits from M = T and from the thread count, which would
//! make a request's logits depend on who else is in the batch; hence this hand-written one.
//!
//! Speed comes from register tiles that reuse loads without changing any element's order:
//! a tile computes MR x rows against NR W rows, holding MR·NR eight-lane accumulators; per
//! step of eight k it loads MR x vectors and NR W vectors for MR·NR multiply-adds. AVX2,
//! f32 weights: 3×4 tiles (12 accumulators + 3 x registers, W straight from memory into
//! the FMAs), a leftover pair of rows 2×4, a single row 1×8 (the GEMV tile: eight W rows
//! stream at once, hiding FMA latency), leftover columns MR×1. Every accumulator sees
//! exactly the same sequence of operations whatever the tile, so a row's result is
//! bit-identical whether computed alone (T = 1) or among many rows, in any tile, on any
//! thread (tested).
//!
//! Parallelism: tasks are rectangles of (up to 48 rows) × (a chunk of W rows sized to stay
//! in L2, at least 8), run on rayon. The partition only decides who computes an element,
//! never how, so it may depend freely on T and the thread count.
//!
//! Weights may be f32, f16 or bf16, always accumulated in f32. Half-precision weights halve
//! the memory traffic of decode: with few rows they are widened in registers (F16C, or a
//! shift for bf16) in 2×4 tiles (a 3×4 tile would need every register and spills); a task
//! with 12 rows or more widens its W chunk once into an f32 panel and runs the f32 tiles.
//! Widening is exact, so both routes give the same bits.
//!
//! Instruction sets: on x86_64 an AVX2 + FMA + F16C path chosen at run time
//! (`is_x86_feature_detected!`); elsewhere (or without those) a portable path over
//! eight-lane arrays that LLVM vectorises (SSE2, or NEON on aarch64 where FMA is baseline),
//! with 2×2 / 1×4 tiles that fit SSE2's 16 registers and half weights always widened per
//! task. The two paths may round differently (the portable one fuses only where the build
//! target guarantees FMA), but a backend picks one path at construction and keeps it, so
//! within a process every result is reproducible. Attention scores (`dots`) reuse these
//! kernels.

use crate::lanes::{LANES, hsum, madd};
use crate::quant::int8::{IGemm, Q8Rows};
use crate::quant::{self, Activations, direct::QGemm};
#[cfg(target_arch = "x86_64")]
use crate::tile512;
use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};
use ingot_tensor::DType;
use rayon::prelude::*;
use std::ops::Range;

/// The instruction set the matmul kernels use, chosen once per backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// x86_64 with AVX-512 F/BW/DQ/VL besides AVX2, FMA and F16C, detected at run time:
    /// the AVX2 kernels plus 16-lane panel tiles (`tile512.rs`) with the same bits.
    Avx512,
    /// x86_64 with AVX2, FMA and F16C, detected at run time.
    Avx2Fma,
    /// Plain Rust over eight-lane arrays; auto-vectorised.
    Portable,
}

impl Isa {
    /// The fastest instruction set this CPU offers.
    pub fn detect() -> Isa {
        Isa::available()[0]
    }

    /// Every instruction set this CPU can run, fastest first (`Portable` always last).
    pub fn available() -> Vec<Isa> {
        let mut v = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c")
            {
                if is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512dq")
                    && is_x86_feature_detected!("avx512vl")
                {
                    v.push(Isa::Avx512);
                }
                v.push(Isa::Avx2Fma);
            }
        }
        v.push(Isa::Portable);
        v
    }

    /// Whether the AVX2 + FMA + F16C kernels may run (they give every x86 path's bits).
    pub(crate) fn has_avx2(self) -> bool {
        matches!(self, Isa::Avx512 | Isa::Avx2Fma)
    }
}

/// A weight element: widened to f32 exactly.
pub(crate) trait Weight: Copy + Send + Sync + 'static {
    const ZERO: Self;
    fn widen(self) -> f32;
    /// Widens a whole slice (`dst.len() == src.len()`), vectorised where the crate can.
    fn widen_slice(src: &[Self], dst: &mut [f32]);
    /// The slice itself when the weights already are f32.
    fn as_f32(s: &[Self]) -> Option<&[f32]> {
        let _ = s;
        None
    }
    /// Loads eight consecutive elements as f32 lanes.
    /// Safety: `p..p+8` readable; the caller runs with AVX2 and F16C.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256;
}

impl Weight for f32 {
    const ZERO: Self = 0.0;
    #[inline(always)]
    fn widen(self) -> f32 {
        self
    }
    fn widen_slice(src: &[Self], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
    fn as_f32(s: &[Self]) -> Option<&[f32]> {
        Some(s)
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256 {
        unsafe { std::arch::x86_64::_mm256_loadu_ps(p) }
    }
}

impl Weight for f16 {
    const ZERO: Self = f16::ZERO;
    #[inline(always)]
    fn widen(self) -> f32 {
        self.to_f32()
    }
    fn widen_slice(src: &[Self], dst: &mut [f32]) {
        src.convert_to_f32_slice(dst);
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
    }
}

impl Weight for bf16 {
    const ZERO: Self = bf16::ZERO;
    #[inline(always)]
    fn widen(self) -> f32 {
        self.to_f32()
    }
    fn widen_slice(src: &[Self], dst: &mut [f32]) {
        src.convert_to_f32_slice(dst);
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        // bf16 is the high half of an f32: zero-extend to 32 bits and shift up.
        unsafe {
            let h = _mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i));
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(h))
        }
    }
}

/// Output pointer shared by the tasks; each task writes a disjoint rectangle.
#[derive(Clone, Copy)]
pub(crate) struct OutPtr(pub(crate) *mut f32);
// SAFETY: tasks write disjoint elements and the buffer outlives the parallel loop.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

/// One matmul problem, or one task's view of it with W rows `w_col0..` widened to f32.
struct Gemm<'a, W> {
    x: &'a [f32], // [T, K]
    w: &'a [W],   // [N - w_col0, K]: W rows from `w_col0` on
    w_col0: usize,
    bias: Option<&'a [f32]>, // [N]
    out: OutPtr,             // [T, ldo]
    k: usize,
    /// Output row stride (N for a matmul).
    ldo: usize,
}

impl<W> Gemm<'_, W> {
    /// Row `col` of W.
    #[inline(always)]
    fn w_row(&self, col: usize) -> &[W] {
        let r = col - self.w_col0;
        &self.w[r * self.k..(r + 1) * self.k]
    }

    /// Stores the reduced value of element (row, col), adding the bias.
    /// Safety: in range, and no other task writes this element.
    #[inline(always)]
    unsafe fn store(&self, row: usize, col: usize, dot: f32) {
        let v = match self.bias {
            Some(b) => dot + b[col],
            None => dot,
        };
        unsafe { *self.out.0.add(row * self.ldo + col) = v };
    }
}

/// A register tile kernel: computes rows `r..r+MR` × columns `c..c+NR` of the output.
trait Kernel {
    /// Safety: the rectangle is in range and owned by the calling task; for the AVX2
    /// kernel the caller is compiled with AVX2, FMA and F16C.
    unsafe fn tile<W: Weight, const MR: usize, const NR: usize>(
        g: &Gemm<'_, W>,
        r: usize,
        c: usize,
    );
}

struct Portable;

/// The portable kernel's inner loop: `acc[i][j] += x_i · w_j` over whole groups of eight,
/// lane by lane. Kept out of line on purpose: inlined into the tile (with its tail and
/// horizontal sums), LLVM's SLP vectoriser packs along the wrong dimension and leaves the
/// accumulators in memory; alone, each step is MR·NR plain vector multiply-adds.
#[inline(never)]
fn accumulate<const MR: usize, const NR: usize>(
    acc: &mut [[[f32; LANES]; NR]; MR],
    x: [&[[f32; LANES]]; MR], // MR rows, `steps` groups each
    w: [&[[f32; LANES]]; NR], // NR rows, `steps` groups each
) {
    let steps = x[0].len();
    assert!(x.iter().all(|r| r.len() == steps) && w.iter().all(|r| r.len() == steps));
    let mut a = *acc;
    for s in 0..steps {
        for j in 0..NR {
            let wv = w[j][s];
            for i in 0..MR {
                let xv = &x[i][s];
                for l in 0..LANES {
                    a[i][j][l] = madd(xv[l], wv[l], a[i][j][l]);
                }
            }
        }
    }
    *acc = a;
}

impl Kernel for Portable {
    #[inline]
    unsafe fn tile<W: Weight, const MR: usize, const NR: usize>(
        g: &Gemm<'_, W>,
        r: usize,
        c: usize,
    ) {
        let k = g.k;
        let kb = k - k % LANES;
        let xr: [&[f32]; MR] = std::array::from_fn(|i| &g.x[(r + i) * k..(r + i + 1) * k]);
        // `matmul` always hands the portable path f32 weights (half ones widened per task).
        let w = W::as_f32(g.w).expect("portable matmul kernel given non-f32 weights");
        let wr: [&[f32]; NR] = std::array::from_fn(|j| &w[(c + j - g.w_col0) * k..][..k]);
        let mut acc = [[[0.0f32; LANES]; NR]; MR];
        accumulate(
            &mut acc,
            std::array::from_fn(|i| xr[i][..kb].as_chunks().0),
            std::array::from_fn(|j| wr[j][..kb].as_chunks().0),
        );
        if kb < k {
            // Ragged tail: one zero-padded group, the same operation as a full step.
            let pad = |row: &[f32]| -> [f32; LANES] {
                std::array::from_fn(|l| row.get(kb + l).copied().unwrap_or(0.0))
            };
            let xt: [[f32; LANES]; MR] = std::array::from_fn(|i| pad(xr[i]));
            let wt: [[f32; LANES]; NR] = std::array::from_fn(|j| pad(wr[j]));
            accumulate(
                &mut acc,
                std::array::from_fn(|i| std::slice::from_ref(&xt[i])),
                std::array::from_fn(|j| std::slice::from_ref(&wt[j])),
            );
        }
        for (i, row) in acc.iter().enumerate() {
            for (j, a) in row.iter().enumerate() {
                // SAFETY: forwarded from the caller.
                unsafe { g.store(r + i, c + j, hsum(*a)) };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
struct Avx2;

#[cfg(target_arch = "x86_64")]
impl Kernel for Avx2 {
    #[inline(always)]
    unsafe fn tile<W: Weight, const MR: usize, const NR: usize>(
        g: &Gemm<'_, W>,
        r: usize,
        c: usize,
    ) {
        use std::arch::x86_64::*;
        let k = g.k;
        let kb = k - k % LANES;
        let xr: [&[f32]; MR] = std::array::from_fn(|i| &g.x[(r + i) * k..(r + i + 1) * k]);
        let wr: [&[W]; NR] = std::array::from_fn(|j| g.w_row(c + j));
        // SAFETY (whole body): every load reads eight elements at p < kb, inside its row
        // of length k; the caller enables AVX2/FMA/F16C.
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); NR]; MR];
            let mut p = 0;
            while p < kb {
                // A loop, not `from_fn`: a closure would not inherit the target features.
                let mut xv = [_mm256_setzero_ps(); MR];
                for i in 0..MR {
                    xv[i] = _mm256_loadu_ps(xr[i].as_ptr().add(p));
                }
                for j in 0..NR {
                    let wv = W::load8(wr[j].as_ptr().add(p));
                    for i in 0..MR {
                        acc[i][j] = _mm256_fmadd_ps(xv[i], wv, acc[i][j]);
                    }
                }
                p += LANES;
            }
            if kb < k {
                // Ragged tail: zero-padded copies, the same operation on every lane.
                let mut xt = [[0.0f32; LANES]; MR];
                for (t, x) in xt.iter_mut().zip(xr) {
                    t[..k - kb].copy_from_slice(&x[kb..]);
                }
                let mut wt = [[W::ZERO; LANES]; NR];
                for (t, w) in wt.iter_mut().zip(wr) {
                    t[..k - kb].copy_from_slice(&w[kb..]);
                }
                for j in 0..NR {
                    let wv = W::load8(wt[j].as_ptr());
                    for i in 0..MR {
                        acc[i][j] = _mm256_fmadd_ps(_mm256_loadu_ps(xt[i].as_ptr()), wv, acc[i][j]);
                    }
                }
            }
            for (i, row) in acc.iter().enumerate() {
                for (j, a) in row.iter().enumerate() {
                    // The tree of `lanes::hsum`: high half + low half, then movehl, then
                    // lane 0 + lane 1.
                    let s = _mm_add_ps(_mm256_castps256_ps128(*a), _mm256_extractf128_ps::<1>(*a));
                    let t = _mm_add_ps(s, _mm_movehl_ps(s, s));
                    let u = _mm_add_ss(t, _mm_shuffle_ps::<0b01>(t, t));
                    g.store(r + i, c + j, _mm_cvtss_f32(u));
                }
            }
        }
    }
}

/// Computes the output rectangle `rows × cols` with kernel `Kn`: groups of MR rows in
/// MR×NR tiles, a leftover pair of rows in 2×NR tiles, a single row in 1×NR1 tiles.
/// Safety: the rectangle is in range and owned by the calling task; MR <= 3.
#[inline(always)]
unsafe fn block<Kn: Kernel, W: Weight, const MR: usize, const NR: usize, const NR1: usize>(
    g: &Gemm<'_, W>,
    rows: Range<usize>,
    cols: Range<usize>,
) {
    let mut r = rows.start;
    // SAFETY: every tile lies inside rows × cols.
    unsafe {
        while rows.end - r >= MR {
            row_group::<Kn, W, MR, NR>(g, r, cols.clone());
            r += MR;
        }
        match rows.end - r {
            2 => row_group::<Kn, W, 2, NR>(g, r, cols),
            1 => row_group::<Kn, W, 1, NR1>(g, r, cols),
            _ => {}
        }
    }
}

/// Rows `r..r+MR` × `cols`: NR-wide tiles, then single columns.
#[inline(always)]
unsafe fn row_group<Kn: Kernel, W: Weight, const MR: usize, const NR: usize>(
    g: &Gemm<'_, W>,
    r: usize,
    cols: Range<usize>,
) {
    let mut c = cols.start;
    // SAFETY: forwarded; every tile lies inside the rectangle.
    unsafe {
        while cols.end - c >= NR {
            Kn::tile::<W, MR, NR>(g, r, c);
            c += NR;
        }
        while c < cols.end {
            Kn::tile::<W, MR, 1>(g, r, c);
            c += 1;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn block_avx2<W: Weight, const MR: usize, const NR: usize, const NR1: usize>(
    g: &Gemm<'_, W>,
    rows: Range<usize>,
    cols: Range<usize>,
) {
    // SAFETY: forwarded; this function carries the features the kernel needs.
    unsafe { block::<Avx2, W, MR, NR, NR1>(g, rows, cols) }
}

/// Runs one task's rectangle with the chosen instruction set and tile shapes.
/// Safety: the rectangle is in range and owned by the calling task; `isa` was detected.
unsafe fn run_block<W: Weight>(isa: Isa, g: &Gemm<'_, W>, rows: Range<usize>, cols: Range<usize>) {
    // SAFETY: forwarded.
    unsafe {
        match isa {
            // f32: 3×4 tiles, W read straight from memory by the FMAs (15 registers).
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma | Isa::Avx512 if size_of::<W>() == size_of::<f32>() => {
                block_avx2::<W, 3, 4, 8>(g, rows, cols)
            }
            // Half weights (small T only): each W vector is converted into a register,
            // and 3×4 would need all 16, which LLVM spills; 2×4 fits.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma | Isa::Avx512 => block_avx2::<W, 2, 4, 8>(g, rows, cols),
            // SSE2 / NEON: small tiles that LLVM keeps in registers.
            _ => block::<Portable, W, 2, 2, 4>(g, rows, cols),
        }
    }
}

/// Rows of x per task (a multiple of the 3- and 6-row tiles).
const ROWS_PER_TASK: usize = 48;
/// Target bytes of one task's W chunk (kept in L2 while its rows stream past).
const W_CHUNK_BYTES: usize = 192 * 1024;

/// From this many rows a task on the AVX-512 path builds the pair panel of `tile512.rs`;
/// below, the AVX2 routes (same bits) were as fast or faster on Zen 5.
const AVX512_PANEL_ROWS: usize = 24;

/// W of a matmul as it is stored: [n, k] floats, or rows of GGUF blocks.
#[derive(Clone, Copy)]
pub(crate) enum Weights<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    BF16(&'a [bf16]),
    /// Rows of GGUF blocks of a block dtype (`DType::is_quantized`).
    Blocks(DType, &'a [u8]),
}

impl<'a> Weights<'a> {
    /// Rows `rows` of a W of rows of `k` elements (one expert of a stack, `moe.rs`).
    pub(crate) fn rows(self, rows: Range<usize>, k: usize) -> Weights<'a> {
        let (a, b) = (rows.start * k, rows.end * k);
        match self {
            Weights::F32(v) => Weights::F32(&v[a..b]),
            Weights::F16(v) => Weights::F16(&v[a..b]),
            Weights::BF16(v) => Weights::BF16(&v[a..b]),
            Weights::Blocks(f, v) => {
                let rb = self.row_bytes(k);
                Weights::Blocks(f, &v[rows.start * rb..rows.end * rb])
            }
        }
    }

    /// Bytes of one W row of `k` elements.
    fn row_bytes(&self, k: usize) -> usize {
        match self {
            Weights::F32(_) => 4 * k,
            Weights::F16(_) | Weights::BF16(_) => 2 * k,
            Weights::Blocks(f, _) => k / f.block_size() * f.block_bytes(),
        }
    }

    /// Whether a task of `m` rows widens its W chunk into an f32 panel (once) rather than
    /// reading W directly in every tile. Either route gives the same bits; this is speed
    /// only, measured with `examples/kernels_bench.rs`.
    fn panel(&self, isa: Isa, m: usize) -> bool {
        match (isa, self) {
            (Isa::Avx512, _) if m >= AVX512_PANEL_ROWS => true,
            (_, Weights::F32(_)) => false,
            (Isa::Portable, Weights::F16(_) | Weights::BF16(_)) => true,
            (_, Weights::F16(_) | Weights::BF16(_)) => m >= 12,
            (_, Weights::Blocks(..)) => m >= 8,
        }
    }
}

/// Columns per task: a multiple of 8 whose W chunk fits `W_CHUNK_BYTES`, halved while
/// there are fewer than four tasks per thread.
fn cols_per_task(t: usize, n: usize, row_bytes: usize) -> usize {
    let threads = rayon::current_num_threads();
    let fit = W_CHUNK_BYTES / row_bytes.max(1);
    let mut nc = (fit / 8 * 8).max(8);
    let row_tasks = t.div_ceil(ROWS_PER_TASK);
    while nc > 8 && n.div_ceil(nc) * row_tasks < 4 * threads {
        nc = (nc / 2 / 8 * 8).max(8);
    }
    nc
}

thread_local! {
    /// The calling thread's 8-bit copy of x (8-bit mode), reused from call to call.
    static Q8X: std::cell::RefCell<Q8Rows> = std::cell::RefCell::new(Q8Rows::default());
    /// Per-thread panels, grown to the largest task seen and then reused (no allocation in
    /// a steady step): row-major f32 W rows, and the AVX-512 pair panel.
    static PANELS: std::cell::RefCell<(Vec<f32>, Vec<f32>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Grows `v` to at least `len` elements and returns that prefix.
fn scratch(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if v.len() < len {
        v.resize(len, 0.0);
    }
    &mut v[..len]
}

/// `x [t, k] · w[n, k]ᵀ + bias [n] -> [t, n]`, row-major. `mode` applies to W in blocks.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    isa: Isa,
    mode: Activations,
    x: &[f32], // [t, k]
    w: Weights<'_>,
    bias: Option<&[f32]>, // [n]
    t: usize,
    k: usize,
    n: usize,
) -> Vec<f32> {
    assert_eq!(x.len(), t * k, "matmul: x storage");
    let w_len = match w {
        Weights::F32(v) => v.len() * 4,
        Weights::F16(v) => v.len() * 2,
        Weights::BF16(v) => v.len() * 2,
        Weights::Blocks(f, b) => {
            assert!(
                k.is_multiple_of(f.block_size()),
                "matmul: K = {k} is not whole {f} blocks"
            );
            b.len()
        }
    };
    assert_eq!(w_len, n * w.row_bytes(k), "matmul: w storage");
    if let Some(b) = bias {
        assert_eq!(b.len(), n, "matmul: bias storage");
    }
    let mut out = vec![f32::NAN; t * n]; // [t, n], poisoned
    if t == 0 || n == 0 {
        return out;
    }
    let out_ptr = OutPtr(out.as_mut_ptr());
    let int8 = mode == Activations::Int8 && matches!(w, Weights::Blocks(..));
    // Bytes a task keeps in L2 per W column: its panel(s) when it widens W, else W itself.
    let m = t.min(ROWS_PER_TASK);
    let per_col = match (int8, w.panel(isa, m), isa) {
        (false, true, Isa::Avx512) if m >= AVX512_PANEL_ROWS => 8 * k,
        (false, true, _) => 4 * k,
        // The 8-bit VNNI panel: a byte per weight and three scales per chunk.
        (true, _, Isa::Avx512) if m >= 8 => w.row_bytes(k) + k + 12 * (k / 32),
        _ => w.row_bytes(k),
    };
    let nc = cols_per_task(t, n, per_col);
    let col_tasks = n.div_ceil(nc);
    let row_tasks = t.div_ceil(ROWS_PER_TASK);
    let run = |q8: Option<&Q8Rows>| {
        (0..row_tasks * col_tasks).into_par_iter().for_each(|task| {
            let (rt, ct) = (task / col_tasks, task % col_tasks);
            let rows = rt * ROWS_PER_TASK..((rt + 1) * ROWS_PER_TASK).min(t);
            let cols = ct * nc..((ct + 1) * nc).min(n);
            let job = Job {
                x,
                q8,
                bias,
                out: out_ptr,
                k,
                n,
            };
            // SAFETY: the rectangle rows × cols belongs to this task alone, and `isa`
            // comes from `Isa::detect` (or is `Portable`).
            unsafe { job.run(isa, w, rows, cols) };
        })
    };
    if int8 {
        Q8X.with_borrow_mut(|q8| q8.quantize(x, k));
        Q8X.with_borrow(|q8| run(Some(q8)));
    } else {
        run(None);
    }
    out
}

/// What every task of one matmul shares.
struct Job<'a> {
    x: &'a [f32],
    /// x quantized (8-bit mode).
    q8: Option<&'a Q8Rows>,
    bias: Option<&'a [f32]>,
    out: OutPtr,
    k: usize,
    n: usize,
}

impl Job<'_> {
    /// The problem with W rows `w_col0..` given as `w`.
    fn gemm<'b, W>(&'b self, w: &'b [W], w_col0: usize) -> Gemm<'b, W> {
        Gemm {
            x: self.x,
            w,
            w_col0,
            bias: self.bias,
            out: self.out,
            k: self.k,
            ldo: self.n,
        }
    }

    /// Computes rows × cols. Safety: the rectangle is the caller's; `isa` was detected.
    unsafe fn run(&self, isa: Isa, w: Weights<'_>, rows: Range<usize>, cols: Range<usize>) {
        let k = self.k;
        if let (Some(q8), Weights::Blocks(fmt, b)) = (self.q8, w) {
            let g = IGemm {
                x: q8,
                w: b,
                bias: self.bias,
                out: self.out,
                k,
                ldo: self.n,
            };
            // SAFETY: forwarded from the caller.
            return unsafe { quant::int8(isa, fmt, &g, rows, cols) };
        }
        // SAFETY (every kernel call): forwarded from the caller.
        if !w.panel(isa, rows.len()) {
            return unsafe {
                match w {
                    Weights::F32(v) => run_block(isa, &self.gemm(v, 0), rows, cols),
                    Weights::F16(v) => run_block(isa, &self.gemm(v, 0), rows, cols),
                    Weights::BF16(v) => run_block(isa, &self.gemm(v, 0), rows, cols),
                    Weights::Blocks(fmt, b) => {
                        let g = QGemm {
                            x: self.x,
                            w: b,
                            bias: self.bias,
                            out: self.out,
                            k,
                            ldo: self.n,
                        };
                        quant::direct(isa, fmt, &g, rows, cols)
                    }
                }
            };
        }
        PANELS.with_borrow_mut(|(row_buf, pair_buf)| {
            let nc = cols.len();
            // W rows `cols` as row-major f32 ([nc, K]): borrowed for f32 weights.
            let w_rows: &[f32] = match w {
                Weights::F32(v) => &v[cols.start * k..cols.end * k],
                Weights::F16(v) => {
                    let p = scratch(row_buf, nc * k);
                    f16::widen_slice(&v[cols.start * k..cols.end * k], p);
                    p
                }
                Weights::BF16(v) => {
                    let p = scratch(row_buf, nc * k);
                    bf16::widen_slice(&v[cols.start * k..cols.end * k], p);
                    p
                }
                Weights::Blocks(fmt, b) => {
                    let p = scratch(row_buf, nc * k);
                    unsafe { quant::decode_rows(isa, fmt, b, k, cols.clone(), p) };
                    p
                }
            };
            #[cfg(target_arch = "x86_64")]
            if isa == Isa::Avx512 && rows.len() >= AVX512_PANEL_ROWS {
                let pairs = scratch(pair_buf, tile512::panel_len(nc, k));
                tile512::interleave(w_rows, nc, k, pairs);
                let g = tile512::PanelGemm {
                    x: self.x,
                    panel: pairs,
                    col0: cols.start,
                    ncols: nc,
                    bias: self.bias,
                    out: self.out,
                    k,
                    ldo: self.n,
                };
                return unsafe { tile512::run(&g, rows) };
            }
            let _ = pair_buf;
            unsafe { run_block(isa, &self.gemm(w_rows, cols.start), rows, cols) }
        })
    }
}

/// `out[i * ldo + j] = x_i · w_j` for `x` [m, k] and `w` [n, k], on the calling thread:
/// the attention scores of a run of cache rows, in the same fixed order as a matmul.
pub(crate) fn dots(isa: Isa, x: &[f32], w: &[f32], k: usize, out: &mut [f32], ldo: usize) {
    let (m, n) = (x.len() / k, w.len() / k);
    assert!(
        x.len() == m * k && w.len() == n * k && n <= ldo,
        "dots: shapes"
    );
    if m == 0 || n == 0 {
        return;
    }
    assert!(out.len() >= (m - 1) * ldo + n, "dots: output too short");
    let g = Gemm {
        x,
        w,
        w_col0: 0,
        bias: None,
        out: OutPtr(out.as_mut_ptr()),
        k,
        ldo,
    };
    // SAFETY: the whole (checked) output belongs to this call; `isa` was detected.
    unsafe { run_block(isa, &g, 0..m, 0..n) };
}
