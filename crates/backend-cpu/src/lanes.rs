//! The one reduction order of this crate: eight interleaved f32 lanes and a fixed tree.
//!
//! Every dot product and sum of squares (matmul, attention scores, rms_norm) reduces a
//! vector of length `n` the same way: lane `l` accumulates the elements `i ≡ l (mod 8)` in
//! increasing `i`, a ragged tail being zero-padded to a full group of eight; then the eight
//! lanes are summed as `((a0+a4) + (a2+a6)) + ((a1+a5) + (a3+a7))`, which is what the usual
//! AVX shuffle sequence (high half + low half, `movehl`, one last add) computes. The result
//! is a pure function of the two input vectors: it cannot depend on how many rows share a
//! batch, on tiling or on threads (DESIGN.md §5, batch invariance).
//!
//! The multiply-add is fused where the target always has FMA (aarch64, or x86 built with
//! `fma`), and unfused otherwise; it is a compile-time constant, so every code path built
//! for one target rounds identically. The AVX2 matmul (runtime-detected) always fuses; it is
//! never mixed with the portable path inside one process (see `matmul.rs`).

/// Lanes of the fixed reduction order.
pub(crate) const LANES: usize = 8;

/// Whether `madd` rounds once (fused) on this build target.
pub(crate) const FUSED: bool = cfg!(any(target_arch = "aarch64", target_feature = "fma"));

/// `a * b + c`, fused where that is free (see the module header).
#[inline(always)]
pub(crate) fn madd(a: f32, b: f32, c: f32) -> f32 {
    if FUSED { a.mul_add(b, c) } else { a * b + c }
}

/// The fixed tree over the eight lanes.
#[inline(always)]
pub(crate) fn hsum(a: [f32; LANES]) -> f32 {
    let s = [a[0] + a[4], a[1] + a[5], a[2] + a[6], a[3] + a[7]];
    let t = [s[0] + s[2], s[1] + s[3]];
    t[0] + t[1]
}

/// Dot product of `a` and `b` (equal lengths) in the fixed order.
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; LANES];
    let (ac, at) = a.split_at(a.len() / LANES * LANES);
    let (bc, bt) = b.split_at(ac.len());
    for (x, y) in ac.chunks_exact(LANES).zip(bc.chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] = madd(x[l], y[l], acc[l]);
        }
    }
    if !at.is_empty() {
        let (mut x, mut y) = ([0.0f32; LANES], [0.0f32; LANES]);
        x[..at.len()].copy_from_slice(at);
        y[..bt.len()].copy_from_slice(bt);
        for l in 0..LANES {
            acc[l] = madd(x[l], y[l], acc[l]);
        }
    }
    hsum(acc)
}

/// Sum of squares of `a` in the fixed order (`dot(a, a)`).
#[inline(always)]
pub(crate) fn sum_sq(a: &[f32]) -> f32 {
    dot(a, a)
}
