//! `argmax` against an independent statement of its semantics on random rows: exact ties,
//! `-inf`, NaN (leading and elsewhere), odd vocabulary sizes. Indices must match exactly.

mod common;

use common::*;
use ingot_backend_cpu::CpuBackend;
use ingot_tensor::sampling::argmax_row;
use ingot_tensor::{Backend, BackendError, DType, Op, Shape};

/// The semantics restated without the scan: 0 when the row starts with NaN, else the first
/// index holding the largest non-NaN value (`-0.0` equal to `+0.0`), 0 if there is none.
fn reference(row: &[f32]) -> u32 {
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

/// Random rows drawn from a small value set, so that exact ties are common, with `-inf`
/// and NaN sprinkled in; some rows are all `-inf`, all NaN, or start with NaN.
fn tricky_rows(rng: &mut Rng, t: usize, v: usize) -> Vec<f32> {
    let mut x = vec![0.0f32; t * v];
    for (r, row) in x.chunks_mut(v).enumerate() {
        for e in row.iter_mut() {
            *e = match rng.below(20) {
                0 => f32::NAN,
                1 => f32::NEG_INFINITY,
                2 => -0.0,
                3 => 0.0,
                // a few distinct values: exact ties between far-apart columns
                _ => rng.below(5) as f32 * 0.25 - 0.5,
            };
        }
        match r % 7 {
            1 => row.fill(f32::NEG_INFINITY),
            2 => row.fill(f32::NAN),
            3 => row[0] = f32::NAN,
            4 => row[v - 1] = f32::INFINITY,
            _ => {}
        }
    }
    x
}

#[test]
fn argmax_matches_its_definition() {
    let be = CpuBackend::new();
    let mut rng = Rng::new(30);
    for (t, v) in [(1, 1), (3, 2), (14, 7), (9, 257), (21, 1000), (5, 4099)] {
        let x = tricky_rows(&mut rng, t, v);
        let got = be.argmax(&f32t(&be, &x, &[t, v])).unwrap();
        assert_eq!((got.dtype(), got.dims()), (DType::U32, &[t][..]));
        let got = be.to_u32(&got).unwrap();
        for (r, row) in x.chunks(v).enumerate() {
            assert_eq!(got[r], reference(row), "T={t} V={v} row {r}: {row:?}");
            assert_eq!(got[r], argmax_row(row), "T={t} V={v} row {r}");
        }
        // Plain random rows too (ties rare, no specials).
        let y = rng.vec(t * v);
        let got = be
            .to_u32(&be.argmax(&f32t(&be, &y, &[t, v])).unwrap())
            .unwrap();
        let want: Vec<u32> = y.chunks(v).map(reference).collect();
        assert_eq!(got, want, "T={t} V={v} random");
    }
}

#[test]
fn argmax_supports_only_f32() {
    let be = CpuBackend::new();
    assert!(be.supports(Op::Argmax, DType::F32));
    assert!(!be.supports(Op::Argmax, DType::F16) && !be.supports(Op::Argmax, DType::BF16));
    let half = be
        .from_f32(&[0.5; 8], Shape::new([2, 4]), DType::F16)
        .unwrap();
    assert!(matches!(
        be.argmax(&half),
        Err(BackendError::Unsupported { op: Op::Argmax, .. })
    ));
    assert_eq!(be.sync().ok(), Some(()));
    assert_eq!(be.max_tensor_bytes(), u64::MAX);
}

#[test]
#[should_panic(expected = "no columns")]
fn argmax_rejects_empty_rows() {
    let be = CpuBackend::new();
    let _ = be.argmax(&f32t(&be, &[], &[3, 0]));
}
