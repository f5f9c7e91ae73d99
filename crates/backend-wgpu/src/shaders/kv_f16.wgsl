// KV cache storage of f16 elements, two per u32 word, element 2i in the low half (the
// little-endian layout of an f16 tensor), without the shader-f16 feature. The prefix of
// kv_write_f16 and attention_f16. A word holds two adjacent dims of one cache row (head
// dims are even), so each word is written whole by one invocation.
//
// Writing rounds to nearest, ties to even, in integer arithmetic (`f16_bits`): WGSL leaves
// pack2x16float's rounding direction open and its result indeterminate beyond the f16
// range, while the CPU backend (the `half` crate) rounds to nearest even and overflows to
// infinity; doing it by hand makes both caches hold the same bits. Reading uses
// unpack2x16float, which is exact (every f16 is an f32).

alias KvWord = u32;
const KV_PER_WORD: u32 = 2u;

// The f16 encoding of `x`, round to nearest even; overflow gives infinity, NaN stays NaN
// (quiet, top payload bits kept), f32 values below the f16 subnormals give signed zero.
fn f16_bits(x: f32) -> u32 {
    let b = bitcast<u32>(x);
    let sign = (b >> 16u) & 0x8000u;
    let a = b & 0x7fffffffu;
    if a > 0x7f800000u {
        return sign | 0x7e00u | ((a >> 13u) & 0x3ffu);
    }
    if a >= 0x477ff000u {
        // At or above 65520, halfway between the largest f16 (65504) and 2^16: infinity.
        return sign | 0x7c00u;
    }
    if a >= 0x38800000u {
        // Normal f16 (>= 2^-14): rebias the exponent (127 -> 15), round at mantissa bit 13.
        let r = a - 0x38000000u;
        return sign | ((r + 0xfffu + ((r >> 13u) & 1u)) >> 13u);
    }
    let e = a >> 23u;
    if e < 102u {
        // Below 2^-25 (half the smallest subnormal, 2^-24): rounds to zero.
        return sign;
    }
    // Subnormal f16: units of 2^-24, i.e. the 24-bit significand shifted right by 126 - e.
    let m = (a & 0x7fffffu) | 0x800000u;
    let shift = 126u - e; // 14..=24
    let q = m >> shift;
    let rem = m & ((1u << shift) - 1u);
    let mid = 1u << (shift - 1u);
    var up = 0u;
    if rem > mid || (rem == mid && (q & 1u) == 1u) {
        up = 1u;
    }
    return sign | (q + up);
}

fn kv_pack(x: vec2<f32>) -> KvWord {
    return f16_bits(x.x) | (f16_bits(x.y) << 16u);
}

fn kv_unpack(w: KvWord) -> vec2<f32> {
    return unpack2x16float(w);
}
