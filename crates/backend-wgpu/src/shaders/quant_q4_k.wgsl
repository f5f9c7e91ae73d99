// Q4_K (GGUF: 256 elements in 144 bytes, d: f16, dmin: f16, 12 bytes of eight 6-bit
// (scale, min) pairs, 128 bytes of nibbles; element of sub-block t:
// x = (d * scale_t) * q - (dmin * min_t)).
// Planes of a part of S sub-blocks (S / 8 super-blocks): nibbles [S, 4 words] (reordered at
// upload: sub-block t's 32 nibbles in Q4_0 order), headers [S / 8, 4 words] (the block's
// first 16 bytes as they are: d, dmin and the packed scales).

const BLOCK_SUBS: u32 = 8u;

struct Sub {
    qs: vec4<u32>,
    d: f32, // d * scale_t
    m: f32, // dmin * min_t
}

// Byte i of the 12 packed scale bytes (words 1-3 of a header).
fn scale_byte(h: vec4<u32>, i: u32) -> u32 {
    return (h[1u + i / 4u] >> (8u * (i % 4u))) & 0xffu;
}

fn load_sub(s: u32) -> Sub {
    let h = words4(4u * sub_count() + 4u * (s / 8u));
    let dd = unpack2x16float(h.x); // (d, dmin)
    let t = s % 8u;
    // ggml's get_scale_min_k4: sub-blocks 0-3 in the low 6 bits of bytes 0-3 (scales) and
    // 4-7 (mins); 4-7 from the nibbles of bytes 8-11 and the top 2 bits of bytes 0-7.
    var sc: u32;
    var mn: u32;
    if t < 4u {
        sc = scale_byte(h, t) & 63u;
        mn = scale_byte(h, t + 4u) & 63u;
    } else {
        sc = (scale_byte(h, t + 4u) & 15u) | ((scale_byte(h, t - 4u) >> 6u) << 4u);
        mn = (scale_byte(h, t + 4u) >> 4u) | ((scale_byte(h, t) >> 6u) << 4u);
    }
    return Sub(words4(4u * s), dd.x * f32(sc), dd.y * f32(mn));
}

fn sub_quad(b: Sub, j: u32) -> vec4<f32> {
    return b.d * nibbles(b.qs, j) - vec4<f32>(b.m);
}
