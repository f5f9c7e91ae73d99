//! The remaining verbs against plain references on random inputs: rms_norm (plain and
//! fused residual), rope (NeoX and interleaved, partial rotary), embedding, silu_mul,
//! gelu_tanh_mul, scale, gather_rows, add, data movement, and `supports` being truthful.
//!
//! Tolerances: 1e-5 relative for f32 arithmetic (|got − ref| ≤ 1e-5 · max(|ref|, 1) for
//! rms_norm, silu_mul and gelu_tanh_mul whose outputs are O(1); rope compares against f64
//! evaluation of
//! the same f32 angle); copies and single f32 adds must be exact.

mod common;

use common::*;
use half::{bf16, f16};
use ingot_backend_cpu::{CpuBackend, CpuStorage};
use ingot_tensor::{Backend, BackendError, DType, Op, RopeStyle, Shape};
use ingot_testkit::reference;

#[track_caller]
fn assert_close(got: &[f32], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        assert!(
            err <= tol * w.abs().max(1.0),
            "{what}: element {i}: got {g}, want {w}"
        );
    }
}

#[test]
fn rms_norm_matches_reference() {
    let mut rng = Rng::new(20);
    let be = CpuBackend::new();
    for (t, h) in [(1, 576), (37, 77), (5, 8), (3, 1), (200, 64)] {
        let (x, w) = (rng.vec(t * h), rng.vec(h));
        let got = be
            .rms_norm(&f32t(&be, &x, &[t, h]), None, &f32t(&be, &w, &[h]), 1e-6)
            .unwrap();
        assert_close(
            &host(&got),
            &reference::rms_norm(&x, &w, 1e-6),
            1e-5,
            &format!("T={t} H={h}"),
        );

        // Fused: residual += x exactly, then the norm of the updated residual.
        let r = rng.vec(t * h);
        let mut rt = f32t(&be, &r, &[t, h]);
        let got = be
            .rms_norm(
                &f32t(&be, &x, &[t, h]),
                Some(&mut rt),
                &f32t(&be, &w, &[h]),
                1e-5,
            )
            .unwrap();
        let summed: Vec<f32> = r.iter().zip(&x).map(|(a, b)| a + b).collect();
        assert_eq!(host(&rt), summed, "T={t} H={h}: residual update");
        assert_close(
            &host(&got),
            &reference::rms_norm(&summed, &w, 1e-5),
            1e-5,
            &format!("fused T={t} H={h}"),
        );
    }
}

#[test]
fn rms_norm_rows_are_batch_invariant() {
    let mut rng = Rng::new(21);
    let be = CpuBackend::new();
    let (t, h) = (300, 96);
    let (x, w) = (rng.vec(t * h), rng.vec(h));
    let wt = f32t(&be, &w, &[h]);
    let full = host(
        &be.rms_norm(&f32t(&be, &x, &[t, h]), None, &wt, 1e-6)
            .unwrap(),
    );
    for r in [0, 17, 299] {
        let one = host(
            &be.rms_norm(&f32t(&be, &x[r * h..(r + 1) * h], &[1, h]), None, &wt, 1e-6)
                .unwrap(),
        );
        assert_eq!(one, full[r * h..(r + 1) * h], "row {r}");
    }
}

#[test]
fn rope_matches_reference() {
    let mut rng = Rng::new(22);
    let be = CpuBackend::new();
    for style in [RopeStyle::Neox, RopeStyle::Interleaved] {
        for (t, hq, hk, d, rot) in [
            (1, 9, 3, 64, 64),
            (37, 8, 2, 64, 32),
            (5, 4, 1, 10, 6),
            (3, 2, 2, 16, 0),
        ] {
            let (q, k) = (rng.vec(t * hq * d), rng.vec(t * hk * d));
            let positions: Vec<u32> = (0..t).map(|_| rng.below(5000) as u32).collect();
            // Llama-style frequencies 10000^(-2i/rot).
            let inv_freq = reference::inv_freq(10000.0, rot);
            let mut qt = f32t(&be, &q, &[t, hq, d]);
            let mut kt = f32t(&be, &k, &[t, hk, d]);
            let ft = f32t(&be, &inv_freq, &[rot / 2]);
            be.rope(&mut qt, &mut kt, &u32t(&be, &positions, &[t]), &ft, style)
                .unwrap();
            for (name, src, got, heads) in [("q", &q, host(&qt), hq), ("k", &k, host(&kt), hk)] {
                for (tok, &pos) in positions.iter().enumerate() {
                    for h in 0..heads {
                        let at = (tok * heads + h) * d;
                        let want = reference::rope_head(
                            &src[at..at + d],
                            pos,
                            &inv_freq,
                            matches!(style, RopeStyle::Interleaved),
                        );
                        let what =
                            format!("{style:?} {name} T={t} D={d} R={rot} token {tok} head {h}");
                        // |x| ≤ 1, so 1e-5 absolute is 1e-5 relative to the input scale.
                        assert_close(&got[at..at + d], &want, 1e-5, &what);
                        assert_eq!(
                            got[at + rot..at + d],
                            src[at + rot..at + d],
                            "{what}: pass-through dims"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn embedding_gathers_rows() {
    let mut rng = Rng::new(23);
    let be = CpuBackend::new();
    let (v, h) = (50, 24);
    let table = rng.vec(v * h);
    let ids: Vec<u32> = (0..37).map(|_| rng.below(v) as u32).collect();
    let idt = u32t(&be, &ids, &[ids.len()]);
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        let tt = be.from_f32(&table, Shape::new([v, h]), dtype).unwrap();
        let stored = be.to_f32(&tt).unwrap();
        let out = be.embedding(&tt, &idt).unwrap();
        assert_eq!(out.dims(), &[ids.len(), h]);
        assert_eq!(out.dtype(), DType::F32);
        let want: Vec<f32> = ids
            .iter()
            .flat_map(|&i| stored[i as usize * h..(i as usize + 1) * h].to_vec())
            .collect();
        assert_eq!(host(&out), want, "{dtype}");
    }
}

#[test]
fn silu_mul_matches_reference() {
    let mut rng = Rng::new(24);
    let be = CpuBackend::new();
    for (t, i) in [(1, 1536), (37, 13), (4, 1)] {
        let x: Vec<f32> = rng.vec(t * 2 * i).iter().map(|v| v * 8.0).collect();
        let got = be.silu_mul(&f32t(&be, &x, &[t, 2 * i])).unwrap();
        assert_eq!(got.dims(), &[t, i]);
        let want = reference::silu_mul(&x, i);
        assert_close(&host(&got), &want, 1e-5, &format!("T={t} I={i}"));
    }
}

#[test]
fn gelu_tanh_mul_matches_reference() {
    let mut rng = Rng::new(26);
    let be = CpuBackend::new();
    for (t, i) in [(1, 1536), (37, 13), (4, 1), (3, 640)] {
        // Gates over [-12, 12]: the cubic term drives tanh into saturation at both ends.
        let x: Vec<f32> = rng.vec(t * 2 * i).iter().map(|v| v * 12.0).collect();
        let got = be.gelu_tanh_mul(&f32t(&be, &x, &[t, 2 * i])).unwrap();
        assert_eq!(got.dims(), &[t, i]);
        let want = reference::gelu_tanh_mul(&x, i);
        assert_close(&host(&got), &want, 1e-5, &format!("T={t} I={i}"));
    }
}

#[test]
fn scale_is_one_rounding() {
    let mut rng = Rng::new(27);
    let be = CpuBackend::new();
    let x = rng.vec(7 * 33);
    let s = 640f32.sqrt();
    let got = be.scale(&f32t(&be, &x, &[7, 33]), s).unwrap();
    assert_eq!(got.dims(), &[7, 33]);
    let want: Vec<f32> = x.iter().map(|v| v * s).collect();
    assert_eq!(host(&got), want);
}

#[test]
fn gather_rows_and_add_are_exact() {
    let mut rng = Rng::new(25);
    let be = CpuBackend::new();
    let (t, h) = (37, 19);
    let x = rng.vec(t * h);
    let idx: Vec<u32> = vec![36, 0, 5, 5, 17];
    let got = be
        .gather_rows(&f32t(&be, &x, &[t, h]), &u32t(&be, &idx, &[5]))
        .unwrap();
    let want: Vec<f32> = idx
        .iter()
        .flat_map(|&i| x[i as usize * h..(i as usize + 1) * h].to_vec())
        .collect();
    assert_eq!(host(&got), want);
    // Integers and half floats gather too.
    let ints: Vec<u32> = (0..t as u32 * 2).collect();
    let got = be
        .gather_rows(&u32t(&be, &ints, &[t, 2]), &u32t(&be, &idx, &[5]))
        .unwrap();
    assert_eq!(
        be.to_u32(&got).unwrap(),
        idx.iter()
            .flat_map(|&i| [2 * i, 2 * i + 1])
            .collect::<Vec<_>>()
    );
    let xh = be.from_f32(&x, Shape::new([t, h]), DType::F16).unwrap();
    let got = be.gather_rows(&xh, &u32t(&be, &idx, &[5])).unwrap();
    assert_eq!(got.dtype(), DType::F16);
    let stored = be.to_f32(&xh).unwrap();
    let want: Vec<f32> = idx
        .iter()
        .flat_map(|&i| stored[i as usize * h..(i as usize + 1) * h].to_vec())
        .collect();
    assert_eq!(be.to_f32(&got).unwrap(), want);

    let n = 40_000; // more than one parallel task
    let (a, b) = (rng.vec(n), rng.vec(n));
    let sum = be
        .add(&f32t(&be, &a, &[200, 200]), &f32t(&be, &b, &[200, 200]))
        .unwrap();
    assert_eq!(sum.dims(), &[200, 200]);
    assert_eq!(
        host(&sum),
        a.iter().zip(&b).map(|(x, y)| x + y).collect::<Vec<_>>()
    );
}

#[test]
fn data_movement_round_trips() {
    let mut rng = Rng::new(26);
    let be = CpuBackend::new();
    let x = rng.vec(60);
    let t = f32t(&be, &x, &[3, 4, 5]);
    assert_eq!((t.dtype(), t.dims()), (DType::F32, &[3usize, 4, 5][..]));
    assert_eq!(be.to_f32(&t).unwrap(), x);
    for (dtype, tol) in [(DType::F16, 2f32.powi(-11)), (DType::BF16, 2f32.powi(-8))] {
        let h = be.from_f32(&x, Shape::new([60]), dtype).unwrap();
        assert_eq!(h.dtype(), dtype);
        assert_eq!(h.storage().dtype(), dtype);
        for (a, b) in be.to_f32(&h).unwrap().iter().zip(&x) {
            assert!((a - b).abs() <= tol * b.abs(), "{dtype}: {a} vs {b}");
        }
    }
    match be
        .from_f32(&[1.5, -2.0], Shape::new([2]), DType::F16)
        .unwrap()
        .storage()
    {
        CpuStorage::F16(v) => assert_eq!(v, &[f16::from_f32(1.5), f16::from_f32(-2.0)]),
        s => panic!("expected f16 storage, got {:?}", s.dtype()),
    }
    match be
        .from_f32(&[1.5], Shape::new([1]), DType::BF16)
        .unwrap()
        .storage()
    {
        CpuStorage::BF16(v) => assert_eq!(v, &[bf16::from_f32(1.5)]),
        s => panic!("expected bf16 storage, got {:?}", s.dtype()),
    }
    let ids = u32t(&be, &[7, 0, u32::MAX], &[3]);
    assert_eq!(be.to_u32(&ids).unwrap(), [7, 0, u32::MAX]);
    assert_eq!(ids.storage().as_u32(), Some(&[7, 0, u32::MAX][..]));
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        let z = be.zeros(Shape::new([2, 3]), dtype).unwrap();
        assert_eq!((z.dtype(), be.to_f32(&z).unwrap()), (dtype, vec![0.0; 6]));
    }
    assert_eq!(
        be.to_u32(&be.zeros(Shape::new([4]), DType::U32).unwrap())
            .unwrap(),
        [0; 4]
    );
}

/// `supports` is truthful: supported combinations run, unsupported ones return
/// `Unsupported` rather than computing garbage.
#[test]
fn supports_is_truthful() {
    let be = CpuBackend::new();
    let half_x = be
        .from_f32(&[0.5; 8], Shape::new([2, 4]), DType::F16)
        .unwrap();
    let f32_x = f32t(&be, &[0.5; 8], &[2, 4]);
    let w4 = f32t(&be, &[1.0; 4], &[4]);
    let unsupported =
        |r: Result<_, BackendError>| matches!(r, Err(BackendError::Unsupported { .. }));
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        assert!(
            be.supports(Op::Matmul, dtype)
                && be.supports(Op::Embedding, dtype)
                && be.supports(Op::GatherRows, dtype)
        );
        let w = be.from_f32(&[0.25; 12], Shape::new([3, 4]), dtype).unwrap();
        assert_eq!(host(&be.matmul(&f32_x, &w, None).unwrap()), [0.5; 6]);
    }
    for op in [
        Op::RmsNorm,
        Op::Rope,
        Op::SiluMul,
        Op::GeluTanhMul,
        Op::Scale,
        Op::Add,
    ] {
        assert!(be.supports(op, DType::F32), "{op}");
        assert!(
            !be.supports(op, DType::F16) && !be.supports(op, DType::BF16),
            "{op}"
        );
    }
    // The KV cache dtype: f32 or f16 (tests/attention.rs runs both).
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
}
