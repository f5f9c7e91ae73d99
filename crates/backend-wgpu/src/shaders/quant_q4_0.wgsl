// Q4_0 (GGUF: 32 elements in 18 bytes, d: f16 then 16 bytes of nibbles; x = d * (q - 8)).
// Planes of a part of S sub-blocks: nibbles [S, 4 words], d [S] f16.
//
// Decoding without integer-to-float conversions (a quarter-rate instruction on NVIDIA
// GPUs, which capped the decode GEMV): a nibble q masked in place at bit p of a word and
// or-ed into the bits of 1.0 is the float m = 1 + q 2^(p - 23) (p = 0, 8, 16: inside the
// 23-bit significand); the same with 8 in place of q is b = 1 + 8 2^(p - 23). m - b =
// (q - 8) 2^(p - 23) exactly (both in [1, 2), the difference a small multiple of their
// ulp), and times d 2^(23 - p) (an exact power-of-two scaling of d) it is (q - 8) d, also
// exact (15 significant bits): the CPU dequantizer's value, bit for bit, signs of zero
// included.

const BLOCK_SUBS: u32 = 1u;

struct Sub {
    qs: vec4<u32>,
    d: vec4<f32>, // d 2^(23 - p) for the nibble positions p = 0, 8, 16, 16 of `sub_quad`
}

fn load_sub(s: u32) -> Sub {
    let d = half_at(4u * sub_count(), s);
    return Sub(words4(4u * s), d * vec4<f32>(8388608.0, 32768.0, 128.0, 128.0));
}

fn sub_quad(b: Sub, j: u32) -> vec4<f32> {
    // Bytes e = 0..3 of the word hold elements 4j + e (low nibbles, j < 4) or their high
    // nibbles (j >= 4, shifted down here); byte 3's nibble is moved to bit 16.
    let w = b.qs[j & 3u] >> select(0u, 4u, j >= 4u);
    let one = vec4<u32>(0x3f800000u);
    let at = vec4<u32>(0xfu, 0xf00u, 0xf0000u, 0xf0000u);
    let m = bitcast<vec4<f32>>((vec4<u32>(w, w, w, w >> 8u) & at) | one);
    let bias = bitcast<vec4<f32>>(vec4<u32>(8u, 0x800u, 0x80000u, 0x80000u) | one);
    return (m - bias) * b.d;
}
