//! The 8-bit mode on AVX-512 VNNI: `vpdpbusd` (64 u8 × i8 products summed into 16 i32
//! lanes per instruction) in the order of `int8.rs` (one float step per chunk and element).
//!
//! Two routes, the same bits (tested against the AVX2 and portable tiles):
//! - Few rows (decode): a tile of eight W columns unpacks one chunk of each into bytes; a
//!   register holds two columns (32 bytes each), so four `vpdpbusd` per x row give every
//!   column's four-product partial sums, which an exact integer shuffle tree reduces to
//!   the columns' half sums; the chunk step then runs on eight columns at once.
//! - Many rows (`PANEL_ROWS` and more per task, prefill and batched decode): the task
//!   unpacks its W columns once into a transposed byte panel, in groups of 16 columns, so
//!   that register `t` of a chunk holds bytes `4t..4t+4` of all 16 columns. One `vpdpbusd`
//!   with x's four bytes broadcast then adds four products to each of 16 columns' integer
//!   sums: no horizontal reduction, eight instructions per chunk, row and 16 columns, and
//!   the chunk step runs on 16 columns at once. This is llama.cpp's repacked-weights idea,
//!   applied per task to the GGUF blocks as they are stored (nothing is repacked at load).

#![cfg(target_arch = "x86_64")]

use super::blocks::CHUNK;
use super::int8::{IGemm, IntBlocks, Layout, Q8Rows, Scales, ints_of_avx2, tile_avx2};
use super::prefetch::Prefetch;
use std::arch::x86_64::*;
use std::ops::Range;

/// From this many rows a task builds the transposed panel.
const PANEL_ROWS: usize = 8;

/// Columns of a panel group (the lanes of a register).
const GROUP: usize = 16;

thread_local! {
    /// The calling thread's panel, grown to the largest task seen and then reused.
    static PANEL: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Rows × cols of `g`. Safety: the rectangle belongs to the caller; the CPU has AVX-512
/// F/BW/DQ/VL/VNNI, AVX2, FMA and F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn run<F: IntBlocks>(g: &IGemm<'_>, rows: Range<usize>, cols: Range<usize>) {
    if rows.len() >= PANEL_ROWS {
        // SAFETY: forwarded (a closure does not inherit the target features, hence the
        // second function).
        PANEL.with_borrow_mut(|buf| unsafe { panel_route::<F>(g, rows, cols, buf) });
    } else {
        // SAFETY: forwarded.
        unsafe { small::<F>(g, rows, cols) }
    }
}

/// The many-rows route. Safety: as [`run`].
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn panel_route<F: IntBlocks>(
    g: &IGemm<'_>,
    rows: Range<usize>,
    cols: Range<usize>,
    buf: &mut Vec<u8>,
) {
    // SAFETY: forwarded.
    unsafe { Panel::<F>::build(g, cols, buf).run(g, rows) }
}

/// The few-rows route: 8-column tiles, leftover columns through the AVX2 tile.
#[inline(always)]
unsafe fn small<F: IntBlocks>(g: &IGemm<'_>, rows: Range<usize>, cols: Range<usize>) {
    #[inline(always)]
    unsafe fn group<F: IntBlocks, const MR: usize>(g: &IGemm<'_>, r: usize, cols: Range<usize>) {
        let mut c = cols.start;
        // SAFETY: forwarded; every tile lies inside the rectangle.
        unsafe {
            while cols.end - c >= 8 {
                tile8::<F, MR>(g, r, c);
                c += 8;
            }
            while c < cols.end {
                tile_avx2::<F, MR, 1>(g, r, c);
                c += 1;
            }
        }
    }
    let mut r = rows.start;
    // SAFETY: every tile lies inside rows × cols.
    unsafe {
        while rows.end - r >= 4 {
            group::<F, 4>(g, r, cols.clone());
            r += 4;
        }
        match rows.end - r {
            3 => group::<F, 3>(g, r, cols),
            2 => group::<F, 2>(g, r, cols),
            1 => group::<F, 1>(g, r, cols),
            _ => {}
        }
    }
}

/// The chunk step of `int8.rs` on a vector of columns: `ints` the half sums before the
/// offset, `xh` x's half sums, `s0`/`s1`/`m` the columns' scales, `dx`/`dxx` x's.
#[inline(always)]
unsafe fn step16<F: IntBlocks>(
    acc: __m512,
    (p0, p1): (__m512i, __m512i),
    xh: [i32; 2],
    (s0, s1, m): (__m512, __m512, __m512),
    (dx, dxx): (f32, f32),
) -> __m512 {
    unsafe {
        let dx = _mm512_set1_ps(dx);
        let mut a = acc;
        if F::SPLIT {
            let i0 = _mm512_sub_epi32(p0, _mm512_set1_epi32(F::OFFSET * xh[0]));
            let i1 = _mm512_sub_epi32(p1, _mm512_set1_epi32(F::OFFSET * xh[1]));
            a = _mm512_fmadd_ps(_mm512_mul_ps(s0, dx), _mm512_cvtepi32_ps(i0), a);
            a = _mm512_fmadd_ps(_mm512_mul_ps(s1, dx), _mm512_cvtepi32_ps(i1), a);
        } else {
            let mut i = _mm512_add_epi32(p0, p1);
            if F::OFFSET != 0 {
                i = _mm512_sub_epi32(i, _mm512_set1_epi32(F::OFFSET * (xh[0] + xh[1])));
            }
            a = _mm512_fmadd_ps(_mm512_mul_ps(s0, dx), _mm512_cvtepi32_ps(i), a);
        }
        if F::HAS_MIN {
            a = _mm512_fmadd_ps(m, _mm512_set1_ps(dxx), a);
        }
        a
    }
}

/// Rows `r..r+MR` × eight columns from `c`, unpacked per chunk (module header).
#[inline(always)]
#[allow(clippy::needless_range_loop)] // row i indexes x, the accumulators and the output
unsafe fn tile8<F: IntBlocks, const MR: usize>(g: &IGemm<'_>, r: usize, c: usize) {
    let k = g.k;
    let chunks = k / CHUNK;
    let wr: [&[u8]; 8] = std::array::from_fn(|j| g.w_row::<F>(c + j));
    let mut q = [[0u8; CHUNK]; 8];
    let mut sc = [Scales::default(); 8];
    // SAFETY (whole body): loads read 32 bytes inside a chunk or 8 floats of `sv`.
    unsafe {
        // After the tree, lane 4Q + p holds quarter Q of register p: column 2p + Q / 2,
        // half Q % 2. These pick the columns 0..8 in order, for half 0 and half 1.
        let half0 = _mm512_setr_epi32(0, 8, 1, 9, 2, 10, 3, 11, 0, 0, 0, 0, 0, 0, 0, 0);
        let half1 = _mm512_setr_epi32(4, 12, 5, 13, 6, 14, 7, 15, 0, 0, 0, 0, 0, 0, 0, 0);
        let mut acc = [_mm512_setzero_ps(); MR]; // lanes 0..8: columns c..c+8
        let ahead = Prefetch::new::<F>(wr[0].as_ptr(), 8, k);
        for ch in 0..chunks {
            ahead.slice(ch, chunks);
            ints_of_avx2::<F, 8>(&wr, ch, &mut q, &mut sc);
            let mut w = [_mm512_setzero_si512(); 4];
            for p in 0..4 {
                let a = _mm256_loadu_si256(q[2 * p].as_ptr() as *const __m256i);
                let b = _mm256_loadu_si256(q[2 * p + 1].as_ptr() as *const __m256i);
                w[p] = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(a), b);
            }
            let mut sv = [[0.0f32; 16]; 3];
            for j in 0..8 {
                sv[0][j] = sc[j].s[0];
                sv[1][j] = sc[j].s[1];
                sv[2][j] = sc[j].m;
            }
            let s0 = _mm512_loadu_ps(sv[0].as_ptr());
            let s1 = _mm512_loadu_ps(sv[1].as_ptr());
            let m = _mm512_loadu_ps(sv[2].as_ptr());
            for i in 0..MR {
                let at = Q8Rows::at(r + i, chunks, ch);
                let qx = _mm512_broadcast_i64x4(_mm256_loadu_si256(
                    g.x.qs.as_ptr().add(at * CHUNK) as *const __m256i,
                ));
                let zero = _mm512_setzero_si512();
                let d: [__m512i; 4] = [
                    _mm512_dpbusd_epi32(zero, w[0], qx),
                    _mm512_dpbusd_epi32(zero, w[1], qx),
                    _mm512_dpbusd_epi32(zero, w[2], qx),
                    _mm512_dpbusd_epi32(zero, w[3], qx),
                ];
                // Exact integer tree: per 128-bit quarter, [ΣA, ΣB, ΣC, ΣD] of the four
                // registers' four lanes.
                let t1 = _mm512_add_epi32(
                    _mm512_unpacklo_epi32(d[0], d[1]),
                    _mm512_unpackhi_epi32(d[0], d[1]),
                );
                let t2 = _mm512_add_epi32(
                    _mm512_unpacklo_epi32(d[2], d[3]),
                    _mm512_unpackhi_epi32(d[2], d[3]),
                );
                let u =
                    _mm512_add_epi32(_mm512_unpacklo_epi64(t1, t2), _mm512_unpackhi_epi64(t1, t2));
                let p0 = _mm512_permutexvar_epi32(half0, u);
                let p1 = _mm512_permutexvar_epi32(half1, u);
                let xh = [g.x.half[2 * at], g.x.half[2 * at + 1]];
                let (dx, dxx) = (g.x.d[at], g.x.dxx[at]);
                acc[i] = step16::<F>(acc[i], (p0, p1), xh, (s0, s1, m), (dx, dxx));
            }
        }
        for i in 0..MR {
            let mut v = [0.0f32; 16];
            _mm512_storeu_ps(v.as_mut_ptr(), acc[i]);
            for (j, &a) in v[..8].iter().enumerate() {
                g.store(r + i, c + j, a);
            }
        }
    }
}

/// A task's W columns unpacked and transposed (module header). Group `gi`, chunk `ch` is
/// `STRIDE` bytes at `(gi * chunks + ch) * STRIDE`: eight registers of bytes (register `t`:
/// bytes `4t..4t+4` of columns 0..16 of the group), then 16 f32 `s_0`, 16 `s_1` (Q6_K) and
/// 16 `m` (formats with a min). Columns past the task's end are zeros and never stored.
struct Panel<'a, F> {
    bytes: &'a [u8],
    col0: usize,
    ncols: usize,
    chunks: usize,
    _f: std::marker::PhantomData<F>,
}

impl<'a, F: IntBlocks> Panel<'a, F> {
    const S0: usize = 8 * 64;
    const S1: usize = Self::S0 + 64;
    const M: usize = Self::S1 + if F::SPLIT { 64 } else { 0 };
    const STRIDE: usize = Self::M + if F::HAS_MIN { 64 } else { 0 };

    /// Unpacks W columns `cols` into `buf`. Safety: AVX-512 F and AVX2/F16C.
    #[inline(always)]
    unsafe fn build(g: &IGemm<'_>, cols: Range<usize>, buf: &'a mut Vec<u8>) -> Self {
        let chunks = g.k / CHUNK;
        let groups = cols.len().div_ceil(GROUP);
        let len = groups * chunks * Self::STRIDE;
        if buf.len() < len {
            buf.resize(len, 0);
        }
        if let Some(layout) = F::LAYOUT {
            // SAFETY: forwarded.
            unsafe { Self::gather(g, cols.clone(), layout, &mut buf[..len]) };
            return Panel {
                bytes: &buf[..len],
                col0: cols.start,
                ncols: cols.len(),
                chunks,
                _f: std::marker::PhantomData,
            };
        }
        let mut q = [[0u8; CHUNK]; GROUP];
        let mut sc = [Scales::default(); GROUP];
        // Dword t of column j sits at dword 8j + t of `q`.
        // SAFETY: AVX-512 F is the caller's.
        let idx = unsafe {
            _mm512_setr_epi32(
                0, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96, 104, 112, 120,
            )
        };
        for gi in 0..groups {
            let first = cols.start + gi * GROUP;
            let n = GROUP.min(cols.end - first);
            let wr: [&[u8]; GROUP] = std::array::from_fn(|j| g.w_row::<F>(first + j.min(n - 1)));
            for ch in 0..chunks {
                // SAFETY: AVX2/F16C are the caller's; the stores stay inside `buf`.
                unsafe {
                    ints_of_avx2::<F, GROUP>(&wr, ch, &mut q, &mut sc);
                    for j in n..GROUP {
                        q[j] = [0; CHUNK];
                        sc[j] = Scales::default();
                    }
                    let dst = buf.as_mut_ptr().add((gi * chunks + ch) * Self::STRIDE);
                    let src = q.as_ptr() as *const i32;
                    for t in 0..8 {
                        let v = _mm512_i32gather_epi32::<4>(
                            _mm512_add_epi32(idx, _mm512_set1_epi32(t as i32)),
                            src,
                        );
                        _mm512_storeu_si512(dst.add(64 * t) as *mut __m512i, v);
                    }
                    let f = dst as *mut f32;
                    for (j, s) in sc.iter().enumerate() {
                        *f.add(Self::S0 / 4 + j) = s.s[0];
                        if F::SPLIT {
                            *f.add(Self::S1 / 4 + j) = s.s[1];
                        }
                        if F::HAS_MIN {
                            *f.add(Self::M / 4 + j) = s.m;
                        }
                    }
                }
            }
        }
        Panel {
            bytes: &buf[..len],
            col0: cols.start,
            ncols: cols.len(),
            chunks,
            _f: std::marker::PhantomData,
        }
    }

    /// [`Panel::build`] for 32-element blocks of a simple [`Layout`]: each register of the
    /// panel is gathered from the 16 columns' blocks (four bytes each) and masked, with no
    /// unpacked copy in between; the scales are gathered and converted 16 at a time.
    /// Safety: AVX-512 F/BW and F16C; `out` is the panel's length.
    #[inline(always)]
    unsafe fn gather(g: &IGemm<'_>, cols: Range<usize>, layout: Layout, out: &mut [u8]) {
        let chunks = g.k / CHUNK;
        let row_bytes = chunks * F::BYTES;
        // SAFETY (whole body): gathers read inside the group's W rows (masked columns
        // read nothing); stores stay inside `out`.
        unsafe {
            let lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
            let rows = _mm512_mullo_epi32(lane, _mm512_set1_epi32(row_bytes as i32));
            let low = _mm512_set1_epi8(0x0F);
            for gi in 0..cols.len().div_ceil(GROUP) {
                let first = cols.start + gi * GROUP;
                let n = GROUP.min(cols.end - first);
                let mask: __mmask16 = if n == GROUP { !0 } else { (1u16 << n) - 1 };
                let w0 = g.w.as_ptr().add(first * row_bytes);
                for ch in 0..chunks {
                    let blk = w0.add(ch * F::BYTES);
                    let dst = out.as_mut_ptr().add((gi * chunks + ch) * Self::STRIDE);
                    let zero = _mm512_setzero_si512();
                    let reg = |t: usize| dst.add(64 * t) as *mut __m512i;
                    match layout {
                        Layout::Nibbles(at) => {
                            for t in 0..4 {
                                let v = _mm512_mask_i32gather_epi32::<1>(
                                    zero,
                                    mask,
                                    rows,
                                    blk.add(at + 4 * t) as *const i32,
                                );
                                _mm512_storeu_si512(reg(t), _mm512_and_si512(v, low));
                                let hi = _mm512_and_si512(_mm512_srli_epi32::<4>(v), low);
                                _mm512_storeu_si512(reg(t + 4), hi);
                            }
                        }
                        Layout::Bytes(at) => {
                            for t in 0..8 {
                                let v = _mm512_mask_i32gather_epi32::<1>(
                                    zero,
                                    mask,
                                    rows,
                                    blk.add(at + 4 * t) as *const i32,
                                );
                                // Masked-off columns stay zero (their scale is zero too).
                                let v = _mm512_maskz_xor_epi32(mask, v, _mm512_set1_epi8(-128));
                                _mm512_storeu_si512(reg(t), v);
                            }
                        }
                    }
                    // The f16 scale at byte 0 and (formats with a min) the min at byte 2.
                    let sm = _mm512_mask_i32gather_epi32::<1>(zero, mask, rows, blk as *const i32);
                    let f = dst as *mut f32;
                    let d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(sm));
                    _mm512_storeu_ps(f.add(Self::S0 / 4), d);
                    if F::SPLIT {
                        _mm512_storeu_ps(f.add(Self::S1 / 4), d);
                    }
                    if F::HAS_MIN {
                        let m = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(sm)));
                        _mm512_storeu_ps(f.add(Self::M / 4), m);
                    }
                }
            }
        }
    }

    /// Rows × the panel's columns: tiles of 4 rows × 2 groups. Safety: as [`run`].
    #[inline(always)]
    unsafe fn run(&self, g: &IGemm<'_>, rows: Range<usize>) {
        let groups = self.ncols.div_ceil(GROUP);
        let mut r = rows.start;
        // SAFETY: every tile lies inside rows × the panel's columns.
        unsafe {
            while rows.end - r >= 4 {
                self.row_group::<4>(g, r, groups);
                r += 4;
            }
            match rows.end - r {
                3 => self.row_group::<3>(g, r, groups),
                2 => self.row_group::<2>(g, r, groups),
                1 => self.row_group::<1>(g, r, groups),
                _ => {}
            }
        }
    }

    #[inline(always)]
    unsafe fn row_group<const MR: usize>(&self, g: &IGemm<'_>, r: usize, groups: usize) {
        let mut gi = 0;
        // SAFETY: forwarded.
        unsafe {
            while groups - gi >= 2 {
                self.tile::<MR, 2>(g, r, gi);
                gi += 2;
            }
            if gi < groups {
                self.tile::<MR, 1>(g, r, gi);
            }
        }
    }

    /// Rows `r..r+MR` × groups `g0..g0+NG`.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // row i indexes x, the accumulators and the output
    unsafe fn tile<const MR: usize, const NG: usize>(&self, g: &IGemm<'_>, r: usize, g0: usize) {
        let chunks = self.chunks;
        // SAFETY (whole body): panel reads stay inside groups g0..g0+NG; x reads inside
        // row r + i's chunk; stores only to the panel's real columns.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); NG]; MR];
            for ch in 0..chunks {
                let base: [*const u8; NG] = std::array::from_fn(|n| {
                    self.bytes
                        .as_ptr()
                        .add(((g0 + n) * chunks + ch) * Self::STRIDE)
                });
                let qx: [*const i32; MR] = std::array::from_fn(|i| {
                    g.x.qs.as_ptr().add(Q8Rows::at(r + i, chunks, ch) * CHUNK) as *const i32
                });
                let zero = _mm512_setzero_si512();
                let mut p0 = [[zero; NG]; MR];
                let mut p1 = [[zero; NG]; MR];
                for t in 0..8 {
                    let mut w = [zero; NG];
                    for n in 0..NG {
                        w[n] = _mm512_loadu_si512(base[n].add(64 * t) as *const __m512i);
                    }
                    for i in 0..MR {
                        let xb = _mm512_set1_epi32(std::ptr::read_unaligned(qx[i].add(t)));
                        for n in 0..NG {
                            if F::SPLIT && t >= 4 {
                                p1[i][n] = _mm512_dpbusd_epi32(p1[i][n], w[n], xb);
                            } else {
                                p0[i][n] = _mm512_dpbusd_epi32(p0[i][n], w[n], xb);
                            }
                        }
                    }
                }
                for n in 0..NG {
                    let f = base[n] as *const f32;
                    let s0 = _mm512_loadu_ps(f.add(Self::S0 / 4));
                    let s1 = if F::SPLIT {
                        _mm512_loadu_ps(f.add(Self::S1 / 4))
                    } else {
                        s0
                    };
                    let m = if F::HAS_MIN {
                        _mm512_loadu_ps(f.add(Self::M / 4))
                    } else {
                        s0
                    };
                    for i in 0..MR {
                        let at = Q8Rows::at(r + i, chunks, ch);
                        let xh = [g.x.half[2 * at], g.x.half[2 * at + 1]];
                        let (dx, dxx) = (g.x.d[at], g.x.dxx[at]);
                        acc[i][n] = step16::<F>(
                            acc[i][n],
                            (p0[i][n], p1[i][n]),
                            xh,
                            (s0, s1, m),
                            (dx, dxx),
                        );
                    }
                }
            }
            for i in 0..MR {
                for n in 0..NG {
                    let first = (g0 + n) * GROUP;
                    let cnt = GROUP.min(self.ncols - first);
                    let mut v = acc[i][n];
                    let col = self.col0 + first;
                    let mask: __mmask16 = if cnt == GROUP { !0 } else { (1u16 << cnt) - 1 };
                    if let Some(b) = g.bias {
                        v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, b.as_ptr().add(col)));
                    }
                    _mm512_mask_storeu_ps(g.out.0.add((r + i) * g.ldo + col), mask, v);
                }
            }
        }
    }
}
