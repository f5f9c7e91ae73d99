// GGUF block formats on the GPU: the layout the backend uploads them in, and the helpers
// every format's snippet (`quant_*.wgsl`, prepended before this file) builds on. The family
// appended after it (matmul, embedding) binds the weights as `w_data: array<WData>` and says
// how many rows of how many weights its bound part holds (`weight_rows`, `weight_k`).
//
// Layout (made at upload by `blocks.rs`): GGUF blocks are 18, 20, 22, 34, 144 or 210 bytes,
// so their fields sit at any byte offset; the backend stores a weight's part as planes of
// u32 words instead, every field word-aligned, the part padded to 16 bytes. It is bound as
// `array<vec4<u32>>`, so a sub-block's 16 bytes of nibbles are one 16-byte load and a
// scalar field is a component of one. First the quantized values of each
// 32-element sub-block (16 bytes of nibbles, 32 bytes of Q8_0 integers), sub-block s at
// word 4s (8s for Q8_0); then the format's other fields, each in a plane of its own (see
// its snippet). A matrix [N, K] is N rows of K / 32 sub-blocks, so sub-block s of the part
// holds its elements 32s .. 32s + 31: rows start on sub-block boundaries. The blocks are
// stored in row tiles (`blocks.rs`): the rows of the part ROW_TILE at a time, block b of every
// row of a tile before block b + 1 of any, so that neighbouring rows' sub-blocks at the same
// k are neighbours in memory (the decode GEMV's lanes read them together); `sub_slot` gives
// where a row's sub-block sits, and every plane is indexed by that slot. Every 4-bit plane
// keeps Q4_0's nibble order (byte j of a sub-block: element j in the low nibble, element
// j + 16 in the high one); Q4_K's and Q6_K's nibbles are reordered into it at upload. The
// planes take exactly the bytes of the blocks.
//
// Exactness: a decoded weight is the CPU dequantizer's value (`ingot_tensor::quant`) bit for
// bit. Every product there (an f16 scale times an integer below 2^8, (d x 6-bit scale) x
// nibble, (d x i8 scale) x (q - 32)) needs at most 23 significant bits, so it is exact in
// f32; only the final offset add (Q4_1, Q4_K) rounds, once, whether or not the compiler
// fuses it with the product into an fma.
//
// A format's snippet defines `BLOCK_SUBS` (sub-blocks per GGUF block: 1, or 8 for the
// K-quants), `Sub` (one sub-block's fields), `load_sub(s)` (the sub-block in slot s of the
// part, each field loaded once) and `sub_quad(b, j)`: its elements 4j .. 4j + 3 as f32
// (j = 0..7).

alias WData = vec4<u32>;

const ROW_TILE: u32 = 32u; // rows per tile of the block order (blocks.rs: ROW_TILE)

// Sub-blocks of 32 elements in the bound part.
fn sub_count() -> u32 {
    return weight_rows() * (weight_k() / 32u);
}

// The slot of sub-block `b` (elements 32b .. 32b + 31) of row `n` of the part: tile
// n / ROW_TILE holds its rows' blocks block-major, a K-quant block's eight sub-blocks
// together.
fn sub_slot(n: u32, b: u32) -> u32 {
    let row_blocks = weight_k() / (32u * BLOCK_SUBS);
    let t0 = n - n % ROW_TILE;
    let rt = min(ROW_TILE, weight_rows() - t0);
    let block = t0 * row_blocks + (b / BLOCK_SUBS) * rt + (n - t0);
    return block * BLOCK_SUBS + b % BLOCK_SUBS;
}

// Word `i` of the part.
fn word(i: u32) -> u32 {
    return w_data[i / 4u][i % 4u];
}

// The four words from word `i` on (`i` a multiple of 4).
fn words4(i: u32) -> vec4<u32> {
    return w_data[i / 4u];
}

// f16 number `i` of the plane starting at word `base`, widened exactly.
fn half_at(base: u32, i: u32) -> f32 {
    let pair = unpack2x16float(word(base + i / 2u));
    return select(pair.x, pair.y, (i & 1u) == 1u);
}

// Elements 4j .. 4j + 3 of a sub-block's 16 bytes of nibbles (Q4_0 order), as f32 0..15.
fn nibbles(qs: vec4<u32>, j: u32) -> vec4<f32> {
    let w = qs[j & 3u] >> select(0u, 4u, j >= 4u);
    return vec4<f32>(vec4<u32>(w, w >> 8u, w >> 16u, w >> 24u) & vec4<u32>(15u));
}

// Element k of row n of the part (the GEMM kernels' staging, embedding).
fn load_w_nk(n: u32, k: u32) -> f32 {
    let q = sub_quad(load_sub(sub_slot(n, k / 32u)), (k % 32u) / 4u);
    return q[k % 4u];
}

// Element i of the part in row-major order.
fn load_w(i: u32) -> f32 {
    return load_w_nk(i / weight_k(), i % weight_k());
}
