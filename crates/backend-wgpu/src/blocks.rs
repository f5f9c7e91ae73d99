//! GGUF block formats in the layout the GPU reads them in: the repacking done once at upload
//! (`WgpuBackend::from_blocks`), so that matmul and embedding decode weights in registers
//! from the blocks instead of from a dense f16 copy (a Q4_0 matrix stays at 4.5 bits per
//! weight instead of 16).
//!
//! GGUF blocks are 18, 20, 22, 34, 144 or 210 bytes, so their f16 scales and integers sit at
//! any byte offset, while a WGSL storage buffer is read a 32-bit word at a time. Each part
//! of a weight (whole rows; see `storage.rs`) is therefore stored as planes of words, every
//! field word-aligned: first the quantized values of each 32-element sub-block (16 bytes of
//! nibbles; 32 bytes of Q8_0 integers), then the format's scales and other fields, each in a
//! plane of its own. The planes take the same bytes as the blocks, the part padded to a
//! multiple of 16 bytes (it is bound as `array<vec4<u32>>`, so that a sub-block's nibbles are
//! one 16-byte load), and a sub-block's fields sit at fixed offsets from its slot.
//!
//! Blocks are stored in row tiles, not row by row: the rows of a part are taken
//! [`ROW_TILE`] at a time (the last tile may be shorter), and inside a tile block b of every
//! row comes before block b + 1 of any (`[tile][block of the row][row of the tile]`). The
//! decode GEMV (`gemv_q`) runs one output column (one row of W) per invocation, 32
//! neighbouring rows in a warp, on the same chunk of K: in this order the 32 lanes' 16-byte
//! loads of one sub-block are 512 contiguous bytes, and their scales 64, where row by row
//! they were 32 cache lines apart. `sub_slot` in `shaders/quant.wgsl` is the same map.
//! Every 4-bit plane keeps Q4_0's nibble order (byte j of a sub-block: element j low,
//! element j + 16 high); Q4_K's and Q6_K's nibbles are reordered into it. `shaders/quant.wgsl`
//! and the `quant_*.wgsl` snippets read exactly this; the decoded values are the CPU
//! dequantizer's (`ingot_tensor::quant`) bit for bit (tested against it through the
//! embedding verb, which copies decoded values).

use ingot_tensor::DType;

/// Rows per tile of the block order (see the module header); `ROW_TILE` in `quant.wgsl`.
pub(crate) const ROW_TILE: usize = 32;

/// The planes of `bytes`, whole rows of `row_blocks` blocks of `dtype` (one part of a
/// matrix) in row-tile order, padded to 16 bytes. Panics on a format outside
/// `kernels::QUANT_DTYPES` (the backend reports those unsupported first).
pub(crate) fn repack(dtype: DType, bytes: &[u8], row_blocks: usize) -> Vec<u8> {
    let all: Vec<&[u8]> = bytes.chunks_exact(dtype.block_bytes()).collect();
    let blocks = tile_order(all.len(), row_blocks).map(|i| all[i]);
    let mut out = match dtype {
        // [d: f16, q: 32 x i8] -> q [S, 32 bytes], d [S] f16.
        DType::Q8_0 => planes(blocks, |b, p| {
            p[0].extend_from_slice(&b[2..34]);
            p[1].extend_from_slice(&b[0..2]);
        }),
        // [d: f16, qs: 16 bytes] -> qs [S, 16 bytes], d [S] f16.
        DType::Q4_0 => planes(blocks, |b, p| {
            p[0].extend_from_slice(&b[2..18]);
            p[1].extend_from_slice(&b[0..2]);
        }),
        // [d: f16, m: f16, qs: 16 bytes] -> qs [S, 16 bytes], (d, m) [S words].
        DType::Q4_1 => planes(blocks, |b, p| {
            p[0].extend_from_slice(&b[4..20]);
            p[1].extend_from_slice(&b[0..4]);
        }),
        // [d: f16, qh: u32, qs: 16 bytes] -> qs [S, 16 bytes], qh [S words], d [S] f16.
        DType::Q5_0 => planes(blocks, |b, p| {
            p[0].extend_from_slice(&b[6..22]);
            p[1].extend_from_slice(&b[2..6]);
            p[2].extend_from_slice(&b[0..2]);
        }),
        // [d, dmin: f16, scales: 12 bytes, qs: 128 bytes] -> nibbles [8 S, 16 bytes] in Q4_0
        // order, headers [S, 16 bytes] (the block's first 16 bytes).
        DType::Q4_K => planes(blocks, |b, p| {
            let q = q4_k_values(b);
            for sub in q.chunks_exact(32) {
                p[0].extend(nibble_bytes(sub));
            }
            p[1].extend_from_slice(&b[0..16]);
        }),
        // [ql: 128, qh: 64, scales: 16 x i8, d: f16] -> low nibbles [8 S, 16 bytes] in Q4_0
        // order, tops [8 S, 8 bytes], scales [S, 16 bytes], d [S] f16.
        DType::Q6_K => planes(blocks, |b, p| {
            let q = q6_k_values(b);
            for sub in q.chunks_exact(32) {
                let low: Vec<u8> = sub.iter().map(|v| v & 0x0F).collect();
                p[0].extend(nibble_bytes(&low));
                let mut tops = [0u32; 2];
                for (e, v) in sub.iter().enumerate() {
                    tops[e / 16] |= u32::from(v >> 4) << (2 * (e % 16));
                }
                p[1].extend(tops.iter().flat_map(|w| w.to_le_bytes()));
            }
            p[2].extend_from_slice(&b[192..208]);
            p[3].extend_from_slice(&b[208..210]);
        }),
        other => panic!("blocks::repack: {other} is not a GPU block format"),
    };
    out.resize(out.len().div_ceil(16) * 16, 0);
    out
}

/// Indices of the `count` blocks of rows of `row_blocks` blocks in row-tile order: for each
/// tile of up to [`ROW_TILE`] rows, block 0 of each of its rows, then block 1, and so on.
fn tile_order(count: usize, row_blocks: usize) -> impl Iterator<Item = usize> {
    let rows = count / row_blocks.max(1);
    (0..rows).step_by(ROW_TILE).flat_map(move |t0| {
        let rt = ROW_TILE.min(rows - t0);
        (0..row_blocks).flat_map(move |b| (t0..t0 + rt).map(move |r| r * row_blocks + b))
    })
}

/// Fills up to four planes block by block with `fill`, then concatenates them.
fn planes<'a>(
    blocks: impl Iterator<Item = &'a [u8]>,
    fill: impl Fn(&[u8], &mut [Vec<u8>; 4]),
) -> Vec<u8> {
    let mut p: [Vec<u8>; 4] = Default::default();
    for b in blocks {
        fill(b, &mut p);
    }
    p.concat()
}

/// 32 nibble values in Q4_0's byte order: byte j = element j | element j + 16 << 4.
fn nibble_bytes(v: &[u8]) -> impl Iterator<Item = u8> + '_ {
    (0..16).map(move |j| (v[j] & 0x0F) | (v[j + 16] << 4))
}

/// The 256 4-bit values of a Q4_K block in element order (sub-blocks 2i and 2i + 1 are the
/// low and high nibbles of bytes 32i .. 32i + 32 of its qs).
fn q4_k_values(b: &[u8]) -> [u8; 256] {
    let qs = &b[16..144];
    let mut q = [0u8; 256];
    for i in 0..4 {
        for l in 0..32 {
            q[64 * i + l] = qs[32 * i + l] & 0x0F;
            q[64 * i + 32 + l] = qs[32 * i + l] >> 4;
        }
    }
    q
}

/// The 256 6-bit values of a Q6_K block in element order (`ingot_tensor::quant`'s layout:
/// element 128h + 32g + l takes its low nibble from ql[64h + l + 32(g % 2)], shifted by
/// 4(g / 2), and its top 2 bits from bits 2g of qh[32h + l]).
fn q6_k_values(b: &[u8]) -> [u8; 256] {
    let (ql, qh) = (&b[0..128], &b[128..192]);
    let mut q = [0u8; 256];
    for h in 0..2 {
        for g in 0..4 {
            for l in 0..32 {
                let low = (ql[64 * h + l + 32 * (g % 2)] >> (4 * (g / 2))) & 0x0F;
                let top = (qh[32 * h + l] >> (2 * g)) & 0x03;
                q[128 * h + 32 * g + l] = low | (top << 4);
            }
        }
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The planes take the blocks' bytes, padded to 16 bytes.
    #[test]
    fn planes_are_as_large_as_the_blocks() {
        for (dtype, _) in crate::kernels::QUANT_DTYPES {
            for (nblocks, row_blocks) in [(1, 1), (3, 1), (8, 2), (66, 2)] {
                let bytes: Vec<u8> = (0..nblocks * dtype.block_bytes())
                    .map(|i| (i * 37 % 251) as u8)
                    .collect();
                let out = repack(dtype, &bytes, row_blocks);
                assert_eq!(
                    out.len(),
                    bytes.len().div_ceil(16) * 16,
                    "{dtype} x {nblocks}"
                );
            }
        }
    }

    /// Row tiles: every block once; inside a tile block-major; a short last tile.
    #[test]
    fn tile_order_is_a_permutation_in_tiles() {
        let (rows, row_blocks) = (ROW_TILE + 5, 3);
        let order: Vec<usize> = tile_order(rows * row_blocks, row_blocks).collect();
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..rows * row_blocks).collect::<Vec<_>>());
        // Slot b * 32 + r of the first tile holds block b of row r.
        assert_eq!(order[ROW_TILE + 1], row_blocks + 1);
        // The last tile (5 rows) starts after the first's 32 * 3 blocks.
        let t1 = ROW_TILE * row_blocks;
        assert_eq!(order[t1 + 5 + 2], (ROW_TILE + 2) * row_blocks + 1);
    }

    /// The WGSL map (`sub_slot` in quant.wgsl) uses the same tile height.
    #[test]
    fn shader_tile_matches() {
        let want = format!("const ROW_TILE: u32 = {ROW_TILE}u;");
        assert!(include_str!("shaders/quant.wgsl").contains(&want));
    }

    /// Q4_K's and Q6_K's reordered values are those the reference dequantizer reads: a
    /// block whose scales are all 1 (and mins 0) decodes to its values (minus 32 for Q6_K).
    #[test]
    fn k_quant_values_follow_the_reference_layout() {
        let mut b = vec![0u8; 144];
        b[0..2].copy_from_slice(&half::f16::from_f32(1.0).to_le_bytes());
        b[4..8].fill(1); // scales 0-3 = 1, and scales 4-7 = 1 through bytes 8-11's low nibbles
        b[12..16].fill(1);
        for (i, v) in b[16..].iter_mut().enumerate() {
            *v = (i * 7 % 256) as u8;
        }
        let mut want = [0f32; 256];
        ingot_tensor::quant::dequantize(DType::Q4_K, &b, &mut want);
        let got = q4_k_values(&b);
        assert!(got.iter().zip(&want).all(|(&q, &w)| f32::from(q) == w));

        let mut b = vec![0u8; 210];
        for (i, v) in b[..192].iter_mut().enumerate() {
            *v = (i * 13 % 256) as u8;
        }
        b[192..208].fill(1);
        b[208..210].copy_from_slice(&half::f16::from_f32(1.0).to_le_bytes());
        ingot_tensor::quant::dequantize(DType::Q6_K, &b, &mut want);
        let got = q6_k_values(&b);
        assert!(
            got.iter()
                .zip(&want)
                .all(|(&q, &w)| f32::from(q) - 32.0 == w)
        );
    }
}
