// cos and sin of a rotary angle, shared by rope.wgsl and rope_kv.wgsl (prepended to each):
// see rope.wgsl's header for the reduction and the polynomials.

const TWO_OVER_PI: f32 = 0.6366197723675814;
// pi/2 = C1 + C2 + C3 + C4 + O(1e-16), each with 12 significant bits.
const C1: f32 = 1.5703125;
const C2: f32 = 0.0004837512969970703;
const C3: f32 = 7.549533620476723e-08;
const C4: f32 = 2.5632829192545614e-12;

// (cos a, sin a) for any finite f32 angle below 2^24 in magnitude.
fn cos_sin(a: f32) -> vec2<f32> {
    let j = round(a * TWO_OVER_PI);
    let ji = i32(j);
    let jh = f32(ji & ~4095); // j rounded down to a multiple of 4096
    let jl = f32(ji - (ji & ~4095)); // the rest, in [0, 4096)
    var r = a - jh * C1;
    r = r - jl * C1;
    r = r - jh * C2;
    r = r - jl * C2;
    r = r - jh * C3;
    r = r - jl * C3;
    r = r - jh * C4;
    r = r - jl * C4;
    let z = r * r;
    let s = fma(r * z, fma(z, fma(z, -1.9515295891e-4, 8.3321608736e-3), -1.6666654611e-1), r);
    let c = fma(z * z, fma(z, fma(z, 2.443315711809948e-5, -1.388731625493765e-3), 4.166664568298827e-2), fma(-0.5, z, 1.0));
    let quadrant = u32(ji & 3);
    switch quadrant {
        case 0u: { return vec2<f32>(c, s); }
        case 1u: { return vec2<f32>(-s, c); }
        case 2u: { return vec2<f32>(-c, -s); }
        default: { return vec2<f32>(s, -c); }
    }
}
