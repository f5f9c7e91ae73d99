//! Row gathers: `embedding` (token ids -> rows of the table, widened to f32) and
//! `gather_rows` (e.g. the rows whose logits are sampled). Pure copies; ids out of range are
//! caller bugs and panic with the offending index.

use crate::matmul::Weight;
use ingot_tensor::{DType, quant};

/// Rows `ids` [T] of `table` [V, H] widened to f32 -> [T, H].
pub(crate) fn embedding<W: Weight>(table: &[W], h: usize, ids: &[u32]) -> Vec<f32> {
    let v = table.len().checked_div(h).unwrap_or(0);
    let mut out = vec![f32::NAN; ids.len() * h]; // [T, H], poisoned
    for (t, (&id, y)) in ids.iter().zip(out.chunks_exact_mut(h.max(1))).enumerate() {
        let id = id as usize;
        assert!(
            id < v,
            "embedding: id {id} of token {t} is outside the table of {v} rows"
        );
        for (y, &e) in y.iter_mut().zip(&table[id * h..(id + 1) * h]) {
            *y = e.widen();
        }
    }
    out
}

/// Rows `ids` [T] of a table [V, H] kept in GGUF blocks of `dtype`, each decoded by the
/// reference dequantizer (a row starts on a block boundary) -> [T, H].
pub(crate) fn embedding_blocks(dtype: DType, table: &[u8], h: usize, ids: &[u32]) -> Vec<f32> {
    let row_bytes = dtype
        .storage_bytes(h)
        .expect("embedding: rows of whole blocks");
    let v = table.len().checked_div(row_bytes).unwrap_or(0);
    let mut out = vec![f32::NAN; ids.len() * h]; // [T, H], poisoned
    for (t, (&id, y)) in ids.iter().zip(out.chunks_exact_mut(h.max(1))).enumerate() {
        let id = id as usize;
        assert!(
            id < v,
            "embedding: id {id} of token {t} is outside the table of {v} rows"
        );
        quant::dequantize(dtype, &table[id * row_bytes..(id + 1) * row_bytes], y);
    }
    out
}

/// Rows `idx` [S] of `x` [T, H] -> [S, H], any element type; `poison` fills first.
pub(crate) fn gather_rows<E: Copy>(x: &[E], h: usize, idx: &[u32], poison: E) -> Vec<E> {
    let rows = x.len().checked_div(h).unwrap_or(0);
    let mut out = vec![poison; idx.len() * h]; // [S, H], poisoned
    for (s, (&i, y)) in idx.iter().zip(out.chunks_exact_mut(h.max(1))).enumerate() {
        let i = i as usize;
        assert!(
            i < rows,
            "gather_rows: index {i} at {s} is outside the {rows} rows"
        );
        y.copy_from_slice(&x[i * h..(i + 1) * h]);
    }
    out
}
