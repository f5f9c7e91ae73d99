// Q6_K (GGUF: 256 elements in 210 bytes, 128 bytes of low nibbles, 64 bytes of 2-bit tops,
// sixteen i8 scales, d: f16; element e: x = (d * scale_{e/16}) * (q - 32)).
// Planes of a part of S sub-blocks (S / 8 super-blocks), reordered at upload: low nibbles
// [S, 4 words] (Q4_0 order), tops [S, 2 words] (element e of a sub-block in bits
// 2(e % 16) .. of word e / 16), scales [S / 8, 4 words] (as in the block), d [S / 8] f16.

const BLOCK_SUBS: u32 = 8u;

struct Sub {
    ql: vec4<u32>,
    qh: vec2<u32>,
    d1: f32, // d * scale of elements 0-15
    d2: f32, // d * scale of elements 16-31
}

fn load_sub(s: u32) -> Sub {
    let n = sub_count();
    let g = s / 8u;
    let t = s % 8u;
    // Scales 2t and 2t + 1: bytes 2(t % 2) and 2(t % 2) + 1 of word t / 2, sign-extended.
    let sw = word(6u * n + 4u * g + t / 2u);
    let at = 16u * (t % 2u);
    let s1 = bitcast<i32>(sw << (24u - at)) >> 24u;
    let s2 = bitcast<i32>(sw << (16u - at)) >> 24u;
    let d = half_at(6u * n + n / 2u, g);
    let tops = words4(4u * n + 4u * (s / 2u)); // sub-blocks s and s ^ 1
    let qh = select(tops.xy, tops.zw, (s & 1u) == 1u);
    return Sub(words4(4u * s), qh, d * f32(s1), d * f32(s2));
}

fn sub_quad(b: Sub, j: u32) -> vec4<f32> {
    let h = b.qh[j / 4u] >> (8u * (j % 4u));
    let top = vec4<f32>(vec4<u32>(h, h >> 2u, h >> 4u, h >> 6u) & vec4<u32>(3u));
    let q = nibbles(b.ql, j) + 16.0 * top - vec4<f32>(32.0);
    return select(b.d2, b.d1, j < 4u) * q;
}
