// Q4_1 (GGUF: 32 elements in 20 bytes, d: f16, m: f16, 16 bytes of nibbles; x = d * q + m).
// Planes of a part of S sub-blocks: nibbles [S, 4 words], (d, m) [S words] (d in the low
// half, as in the block).

const BLOCK_SUBS: u32 = 1u;

struct Sub {
    qs: vec4<u32>,
    d: f32,
    m: f32,
}

fn load_sub(s: u32) -> Sub {
    let dm = unpack2x16float(word(4u * sub_count() + s));
    return Sub(words4(4u * s), dm.x, dm.y);
}

fn sub_quad(b: Sub, j: u32) -> vec4<f32> {
    return b.d * nibbles(b.qs, j) + vec4<f32>(b.m);
}
