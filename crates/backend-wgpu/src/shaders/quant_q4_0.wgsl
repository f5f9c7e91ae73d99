// Q4_0 (GGUF: 32 elements in 18 bytes, d: f16 then 16 bytes of nibbles; x = d * (q - 8)).
// Planes of a part of S sub-blocks: nibbles [S, 4 words], d [S] f16.

struct Sub {
    qs: vec4<u32>,
    d: f32,
}

fn load_sub(s: u32) -> Sub {
    return Sub(words4(4u * s), half_at(4u * sub_count(), s));
}

fn sub_quad(b: Sub, j: u32) -> vec4<f32> {
    return b.d * (nibbles(b.qs, j) - vec4<f32>(8.0));
}
