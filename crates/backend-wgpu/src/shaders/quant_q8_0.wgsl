// Q8_0 (GGUF: 32 elements in 34 bytes, d: f16 then 32 i8; x = q * d).
// Planes of a part of S sub-blocks: integers [S, 8 words] (element 4w + b in byte b of word
// w), d [S] f16.

const BLOCK_SUBS: u32 = 1u;

struct Sub {
    lo: vec4<u32>,
    hi: vec4<u32>,
    d: f32,
}

fn load_sub(s: u32) -> Sub {
    return Sub(words4(8u * s), words4(8u * s + 4u), half_at(8u * sub_count(), s));
}

fn sub_quad(b: Sub, j: u32) -> vec4<f32> {
    let w = select(b.lo[j & 3u], b.hi[j & 3u], j >= 4u);
    // Each byte sign-extended by an arithmetic shift.
    let q = vec4<i32>(
        bitcast<i32>(w << 24u) >> 24u,
        bitcast<i32>(w << 16u) >> 24u,
        bitcast<i32>(w << 8u) >> 24u,
        bitcast<i32>(w) >> 24u,
    );
    return vec4<f32>(q) * b.d;
}
