//! Conformance of data movement, `supports` and every verb but attention, against host
//! definitions on random inputs and odd shapes.

use ingot_tensor::sampling::argmax_row;
use ingot_tensor::{Backend, BackendError, DType, Op, RopeStyle, Shape};

use super::{assert_bits, assert_close, f32t, u32t};
use crate::{Rng, reference};

const FLOATS: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

/// `x` rounded to `dtype` on the host (round to nearest even) and widened back.
fn stored(x: &[f32], dtype: DType) -> Vec<f32> {
    match dtype {
        DType::F32 => x.to_vec(),
        DType::F16 => x.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect(),
        DType::BF16 => x
            .iter()
            .map(|&v| half::bf16::from_f32(v).to_f32())
            .collect(),
        d => panic!("no host rounding for {d}"),
    }
}

/// Rows `idx` of `x` (rows of `h` values).
fn rows_of(x: &[f32], h: usize, idx: &[u32]) -> Vec<f32> {
    idx.iter()
        .flat_map(|&i| x[i as usize * h..(i as usize + 1) * h].to_vec())
        .collect()
}

/// `supports` is truthful: what it claims runs, what it denies is `Unsupported` rather
/// than garbage; the rule is the trait's, the same for every backend.
pub fn supports_is_truthful<B: Backend>(be: &B) {
    let half_x = be
        .from_f32(&[0.5; 8], Shape::new([2, 4]), DType::F16)
        .unwrap();
    let f32_x = f32t(be, &[0.5; 8], &[2, 4]);
    let w4 = f32t(be, &[1.0; 4], &[4]);
    let unsupported =
        |r: Result<_, BackendError>| matches!(r, Err(BackendError::Unsupported { .. }));
    for dtype in FLOATS {
        assert!(
            be.supports(Op::Matmul, dtype)
                && be.supports(Op::Embedding, dtype)
                && be.supports(Op::GatherRows, dtype),
            "{dtype}"
        );
        let w = be.from_f32(&[0.25; 12], Shape::new([3, 4]), dtype).unwrap();
        let y = be.matmul(&f32_x, &w, None).unwrap();
        assert_eq!(be.to_f32(&y).unwrap(), [0.5; 6], "{dtype}");
    }
    for op in [
        Op::RmsNorm,
        Op::Rope,
        Op::SiluMul,
        Op::GeluTanhMul,
        Op::Scale,
        Op::Add,
        Op::Argmax,
        Op::Sample,
        Op::TopLogprobs,
    ] {
        assert!(be.supports(op, DType::F32), "{op}");
        assert!(
            !be.supports(op, DType::F16) && !be.supports(op, DType::BF16),
            "{op}"
        );
    }
    // The KV cache dtype: f32 or f16.
    for op in [Op::KvWrite, Op::PagedAttention] {
        assert!(
            be.supports(op, DType::F32) && be.supports(op, DType::F16),
            "{op}"
        );
        assert!(!be.supports(op, DType::BF16), "{op}");
    }
    assert!(unsupported(be.rms_norm(&half_x, None, &w4, 1e-6)));
    assert!(unsupported(be.silu_mul(&half_x)));
    assert!(unsupported(be.gelu_tanh_mul(&half_x)));
    assert!(unsupported(be.scale(&half_x, 2.0)));
    assert!(unsupported(be.add(&half_x, &half_x)));
    assert!(unsupported(be.matmul(&half_x, &f32_x, None)));
    assert!(matches!(
        be.argmax(&half_x),
        Err(BackendError::Unsupported { op: Op::Argmax, .. })
    ));
    // f16 activations into an f16 cache: the cache may be f16, k and v are f32.
    let k = be
        .from_f32(&[0.5; 8], Shape::new([2, 1, 4]), DType::F16)
        .unwrap();
    let mut kc = be.zeros(Shape::new([2, 1, 4, 4]), DType::F16).unwrap();
    let mut vc = be.zeros(Shape::new([2, 1, 4, 4]), DType::F16).unwrap();
    let slots = u32t(be, &[0, 1], &[2]);
    assert!(matches!(
        be.kv_write(&k, &k, &mut kc, &mut vc, &slots),
        Err(BackendError::Unsupported { .. })
    ));
    be.sync().unwrap();
}

/// Uploads and read-backs: f32 and u32 exactly, f16/bf16 as the host's rounding, zeros of
/// every dtype, empty tensors.
pub fn data_movement_round_trips<B: Backend>(be: &B) {
    let mut rng = Rng::new(26);
    let x = rng.vec(60);
    let t = f32t(be, &x, &[3, 4, 5]);
    assert_eq!((t.dtype(), t.dims()), (DType::F32, &[3usize, 4, 5][..]));
    assert_eq!(be.to_f32(&t).unwrap(), x);
    for dtype in FLOATS {
        let h = be.from_f32(&x, Shape::new([60]), dtype).unwrap();
        assert_eq!((h.dtype(), h.dims()), (dtype, &[60usize][..]));
        assert_bits(
            &be.to_f32(&h).unwrap(),
            &stored(&x, dtype),
            &format!("{dtype}"),
        );
        let z = be.zeros(Shape::new([2, 3]), dtype).unwrap();
        assert_eq!((z.dtype(), be.to_f32(&z).unwrap()), (dtype, vec![0.0; 6]));
    }
    let ids = u32t(be, &[7, 0, u32::MAX], &[3]);
    assert_eq!(be.to_u32(&ids).unwrap(), [7, 0, u32::MAX]);
    let z = be.zeros(Shape::new([4]), DType::U32).unwrap();
    assert_eq!(be.to_u32(&z).unwrap(), [0; 4]);
    let empty = f32t(be, &[], &[0, 7]);
    assert_eq!(be.to_f32(&empty).unwrap(), Vec::<f32>::new());
}

/// rms_norm, plain and fused with the residual (`residual += x` exactly, then the norm of
/// the updated residual); each row's bits independent of the batch.
pub fn rms_norm_matches_reference<B: Backend>(be: &B) {
    let mut rng = Rng::new(20);
    for (t, h) in [(1, 576), (37, 77), (5, 8), (3, 1), (200, 64), (2, 1000)] {
        let (x, w, r) = (rng.vec(t * h), rng.vec(h), rng.vec(t * h));
        let what = format!("T={t} H={h}");
        let (xt, wt) = (f32t(be, &x, &[t, h]), f32t(be, &w, &[h]));
        let got = be.rms_norm(&xt, None, &wt, 1e-6).unwrap();
        let want = reference::rms_norm(&x, &w, 1e-6);
        assert_close(&be.to_f32(&got).unwrap(), &want, 1e-5, &what);

        let mut rt = f32t(be, &r, &[t, h]);
        let got = be.rms_norm(&xt, Some(&mut rt), &wt, 1e-5).unwrap();
        let summed: Vec<f32> = r.iter().zip(&x).map(|(a, b)| a + b).collect();
        assert_bits(
            &be.to_f32(&rt).unwrap(),
            &summed,
            &format!("{what}: residual"),
        );
        let want = reference::rms_norm(&summed, &w, 1e-5);
        assert_close(
            &be.to_f32(&got).unwrap(),
            &want,
            1e-5,
            &format!("{what}: fused"),
        );
    }
    let (t, h) = (300, 896);
    let (x, w) = (rng.vec(t * h), rng.vec(h));
    let wt = f32t(be, &w, &[h]);
    let full = be
        .rms_norm(&f32t(be, &x, &[t, h]), None, &wt, 1e-6)
        .unwrap();
    let full = be.to_f32(&full).unwrap();
    for r in [0, 17, 299] {
        let one = f32t(be, &x[r * h..(r + 1) * h], &[1, h]);
        let one = be
            .to_f32(&be.rms_norm(&one, None, &wt, 1e-6).unwrap())
            .unwrap();
        assert_bits(&one, &full[r * h..(r + 1) * h], &format!("row {r} alone"));
    }
}

/// rope in both styles against f64 rotation of the same f32 angle, GQA head counts,
/// partial rotary (the other dims pass through untouched), positions up to 200k.
pub fn rope_matches_reference<B: Backend>(be: &B) {
    let mut rng = Rng::new(22);
    for style in [RopeStyle::Neox, RopeStyle::Interleaved] {
        for (t, hq, hk, d, rot) in [
            (1, 9, 3, 64, 64),
            (37, 8, 2, 64, 32),
            (5, 4, 1, 10, 6),
            (3, 2, 2, 16, 0),
            (4, 14, 2, 128, 128),
        ] {
            let (q, k) = (rng.vec(t * hq * d), rng.vec(t * hk * d));
            let positions: Vec<u32> = (0..t).map(|_| rng.below(200_000) as u32).collect();
            let inv_freq = reference::inv_freq(1e6, rot);
            let mut qt = f32t(be, &q, &[t, hq, d]);
            let mut kt = f32t(be, &k, &[t, hk, d]);
            let ft = f32t(be, &inv_freq, &[rot / 2]);
            be.rope(&mut qt, &mut kt, &u32t(be, &positions, &[t]), &ft, style)
                .unwrap();
            let (qo, ko) = (be.to_f32(&qt).unwrap(), be.to_f32(&kt).unwrap());
            for (name, src, got, heads) in [("q", &q, qo, hq), ("k", &k, ko, hk)] {
                for (tok, &pos) in positions.iter().enumerate() {
                    for h in 0..heads {
                        let at = (tok * heads + h) * d;
                        let interleaved = matches!(style, RopeStyle::Interleaved);
                        let want =
                            reference::rope_head(&src[at..at + d], pos, &inv_freq, interleaved);
                        let what =
                            format!("{style:?} {name} T={t} D={d} R={rot} token {tok} head {h}");
                        // |x| <= 1, so 1e-5 absolute is 1e-5 relative to the input scale.
                        assert_close(&got[at..at + d], &want, 1e-5, &what);
                        assert_bits(&got[at + rot..at + d], &src[at + rot..at + d], &what);
                    }
                }
            }
        }
    }
}

/// embedding copies the stored rows of every float table dtype, widened exactly. (Ids past
/// the table are a caller's bug: each backend's own tests say what it does with them.)
pub fn embedding_gathers_rows<B: Backend>(be: &B) {
    let mut rng = Rng::new(23);
    let (v, h) = (50, 25);
    let table = rng.vec(v * h);
    let mut ids: Vec<u32> = (0..37).map(|_| rng.below(v) as u32).collect();
    ids[5] = (v - 1) as u32;
    let idt = u32t(be, &ids, &[ids.len()]);
    for dtype in FLOATS {
        let tt = be.from_f32(&table, Shape::new([v, h]), dtype).unwrap();
        let out = be.embedding(&tt, &idt).unwrap();
        assert_eq!((out.dims(), out.dtype()), (&[37usize, 25][..], DType::F32));
        let want = rows_of(&stored(&table, dtype), h, &ids);
        assert_bits(&be.to_f32(&out).unwrap(), &want, &format!("{dtype}"));
    }
}

/// silu_mul against f64.
pub fn silu_mul_matches_reference<B: Backend>(be: &B) {
    let mut rng = Rng::new(24);
    for (t, i) in [(1, 1536), (37, 13), (4, 1)] {
        let x: Vec<f32> = rng.vec(t * 2 * i).iter().map(|v| v * 8.0).collect();
        let got = be.silu_mul(&f32t(be, &x, &[t, 2 * i])).unwrap();
        assert_eq!(got.dims(), &[t, i]);
        let want = reference::silu_mul(&x, i);
        assert_close(
            &be.to_f32(&got).unwrap(),
            &want,
            1e-5,
            &format!("T={t} I={i}"),
        );
    }
}

/// gelu_tanh_mul against f64, gates over [-12, 12] so tanh saturates at both ends.
pub fn gelu_tanh_mul_matches_reference<B: Backend>(be: &B) {
    let mut rng = Rng::new(26);
    for (t, i) in [(1, 1536), (37, 13), (4, 1), (3, 640)] {
        let x: Vec<f32> = rng.vec(t * 2 * i).iter().map(|v| v * 12.0).collect();
        let got = be.gelu_tanh_mul(&f32t(be, &x, &[t, 2 * i])).unwrap();
        assert_eq!(got.dims(), &[t, i]);
        let want = reference::gelu_tanh_mul(&x, i);
        assert_close(
            &be.to_f32(&got).unwrap(),
            &want,
            1e-5,
            &format!("T={t} I={i}"),
        );
    }
}

/// scale is one f32 multiplication per element: exact.
pub fn scale_is_one_rounding<B: Backend>(be: &B) {
    let mut rng = Rng::new(27);
    let x = rng.vec(7 * 333);
    let s = 640f32.sqrt();
    let got = be.scale(&f32t(be, &x, &[7, 333]), s).unwrap();
    assert_eq!(got.dims(), &[7, 333]);
    let want: Vec<f32> = x.iter().map(|v| v * s).collect();
    assert_bits(&be.to_f32(&got).unwrap(), &want, "scale");
}

/// gather_rows of every dense dtype (odd widths: 16-bit rows straddle words); add exact.
pub fn gather_rows_and_add_are_exact<B: Backend>(be: &B) {
    let mut rng = Rng::new(25);
    let (t, h) = (37, 19);
    let x = rng.vec(t * h);
    let idx = [36u32, 0, 5, 5, 17];
    let it = u32t(be, &idx, &[5]);
    for dtype in FLOATS {
        let xt = be.from_f32(&x, Shape::new([t, h]), dtype).unwrap();
        let got = be.gather_rows(&xt, &it).unwrap();
        assert_eq!((got.dims(), got.dtype()), (&[5usize, 19][..], dtype));
        let want = rows_of(&stored(&x, dtype), h, &idx);
        assert_bits(&be.to_f32(&got).unwrap(), &want, &format!("{dtype}"));
    }
    let ints: Vec<u32> = (0..t as u32 * 3).collect();
    let got = be
        .gather_rows(&u32t(be, &ints, &[t, 3]), &u32t(be, &[4, 36, 4], &[3]))
        .unwrap();
    assert_eq!(
        be.to_u32(&got).unwrap(),
        [12, 13, 14, 108, 109, 110, 12, 13, 14]
    );

    let (a, b) = (rng.vec(200 * 201), rng.vec(200 * 201));
    let sum = be
        .add(&f32t(be, &a, &[200, 201]), &f32t(be, &b, &[200, 201]))
        .unwrap();
    assert_eq!(sum.dims(), &[200, 201]);
    let want: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    assert_bits(&be.to_f32(&sum).unwrap(), &want, "add");
}

/// argmax's semantics restated without a scan: 0 when the row starts with NaN, else the
/// first index holding the largest non-NaN value (`-0.0` equal to `+0.0`), 0 if none.
fn argmax_reference(row: &[f32]) -> u32 {
    if row[0].is_nan() {
        return 0;
    }
    let max = row
        .iter()
        .copied()
        .filter(|x| !x.is_nan())
        .fold(f32::NEG_INFINITY, f32::max);
    row.iter().position(|&x| x == max).unwrap_or(0) as u32
}

/// Rows that stress argmax's exact semantics: values from a small set (so equal maxima in
/// far-apart columns are common), NaN, -inf and both zeros sprinkled in; some rows all
/// -inf, all NaN, NaN in column 0, +inf in the last column, or -0 in column 0.
fn argmax_rows(rng: &mut Rng, t: usize, v: usize) -> Vec<f32> {
    let mut x = vec![0.0f32; t * v];
    for (r, row) in x.chunks_mut(v).enumerate() {
        for e in row.iter_mut() {
            *e = match rng.below(20) {
                0 => f32::NAN,
                1 => f32::NEG_INFINITY,
                2 => -0.0,
                3 => 0.0,
                _ => rng.below(5) as f32 * 0.25 - 0.5,
            };
        }
        match r % 7 {
            1 => row.fill(f32::NEG_INFINITY),
            2 => row.fill(f32::NAN),
            3 => row[0] = f32::NAN,
            4 => row[v - 1] = f32::INFINITY,
            5 => row[0] = -0.0, // -0 in column 0 against +0 elsewhere: column 0 must win
            _ => {}
        }
    }
    x
}

/// argmax index for index (a choice, no tolerance) against its definition and against
/// `sampling::argmax_row`: tie-heavy rows with NaN and -inf, plain random rows, vocabulary
/// sizes below, at and above a 256-wide workgroup, one past whole 1024-column spans, Qwen's
/// 151936 and one past 256 spans of 1024 (the GPU's two-pass form); a maximum in every
/// column of a 300-wide row with a later tie that must lose; zero rows.
pub fn argmax_matches_its_definition<B: Backend>(be: &B) {
    let mut rng = Rng::new(40);
    for (t, v) in [
        (1, 1),
        (3, 2),
        (14, 7),
        (9, 255),
        (7, 256),
        (8, 257),
        (21, 1000),
        (5, 4099),
        (4, 2049),
        (2, 151_936),
        (2, 300_001),
    ] {
        for (kind, x) in [
            ("tricky", argmax_rows(&mut rng, t, v)),
            ("random", rng.vec(t * v)),
        ] {
            let got = be.argmax(&f32t(be, &x, &[t, v])).unwrap();
            assert_eq!((got.dtype(), got.dims()), (DType::U32, &[t][..]));
            let got = be.to_u32(&got).unwrap();
            for (r, row) in x.chunks(v).enumerate() {
                assert_eq!(got[r], argmax_reference(row), "{kind} T={t} V={v} row {r}");
                assert_eq!(got[r], argmax_row(row), "{kind} T={t} V={v} row {r}");
            }
        }
    }
    let v = 300;
    let mut x = vec![-1.0f32; v * v];
    for r in 0..v {
        x[r * v + r] = 2.0;
        x[r * v + (r * 7 + 1).max(r + 1).min(v - 1)] = 2.0;
    }
    let got = be
        .to_u32(&be.argmax(&f32t(be, &x, &[v, v])).unwrap())
        .unwrap();
    assert_eq!(got, (0..v as u32).collect::<Vec<_>>());
    let none = be.argmax(&f32t(be, &[], &[0, 5])).unwrap();
    assert_eq!(be.to_u32(&none).unwrap(), Vec::<u32>::new());
}

/// A wrong shape panics in the trait's provided method, before the backend's `*_impl`
/// sees it: the message is `tensor::check`'s.
pub fn checks_run_before_the_backend<B: Backend>(be: &B) {
    let x = f32t(be, &[0.0; 6], &[2, 3]);
    let w = f32t(be, &[0.0; 20], &[4, 5]);
    let _ = be.matmul(&x, &w, None);
}
