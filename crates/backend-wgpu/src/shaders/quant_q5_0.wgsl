// Q5_0 (GGUF: 32 elements in 22 bytes, d: f16, qh: u32, 16 bytes of nibbles; bit i of qh is
// bit 4 of element i; x = d * (q - 16)).
// Planes of a part of S sub-blocks: nibbles [S, 4 words], qh [S words], d [S] f16.

const BLOCK_SUBS: u32 = 1u;

struct Sub {
    qs: vec4<u32>,
    qh: u32,
    d: f32,
}

fn load_sub(s: u32) -> Sub {
    let n = sub_count();
    return Sub(words4(4u * s), word(4u * n + s), half_at(5u * n, s));
}

fn sub_quad(b: Sub, j: u32) -> vec4<f32> {
    let h = b.qh >> (4u * j);
    let top = vec4<f32>(vec4<u32>(h, h >> 1u, h >> 2u, h >> 3u) & vec4<u32>(1u));
    return b.d * (nibbles(b.qs, j) + 16.0 * top - vec4<f32>(16.0));
}
