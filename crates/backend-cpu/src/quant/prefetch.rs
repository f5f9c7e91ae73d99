//! Software prefetch of the next tile's W rows, for the x86 tiles of both activation modes.
//!
//! A tile's rows are contiguous in memory, but a row is a few hundred bytes (K = 576: 360
//! bytes of Q4_1), too short for the hardware prefetchers to lock onto a tile's interleaved
//! row streams, so a one-row decode waited on memory: on a 2-core AMD EPYC (Zen 5) the
//! default model's decode went from 52 to 73-95 tok/s with this (2026-12-02,
//! `docs/BENCHMARKS.md`). Each chunk step fetches its share of the next tile (two tiles
//! ahead measured slower, four slower still). Prefetching changes no value.

#![cfg(target_arch = "x86_64")]

use super::blocks::Blocks;

/// The next tile's W rows, a slice per chunk step.
pub(crate) struct Prefetch {
    next: *const u8,
    span: usize,
}

impl Prefetch {
    /// For the tile of `nr` rows of K elements starting at `first` (row-major blocks).
    #[inline(always)]
    pub(crate) fn new<F: Blocks>(first: *const u8, nr: usize, k: usize) -> Prefetch {
        let span = nr * (k / F::BLOCK * F::BYTES);
        Prefetch {
            next: first.wrapping_add(span),
            span,
        }
    }

    /// Prefetches the `ch`-th of `nch` slices of the next tile. Addresses past the end of
    /// the weights are harmless: a prefetch never faults.
    #[inline(always)]
    pub(crate) fn slice(&self, ch: usize, nch: usize) {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let per = self.span.div_ceil(nch).next_multiple_of(64);
        let end = ((ch + 1) * per).min(self.span + 63);
        let mut line = ch * per;
        while line < end {
            // SAFETY: SSE is baseline on x86_64; prefetching does not access memory.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(self.next.wrapping_add(line) as *const i8) };
            line += 64;
        }
    }
}
