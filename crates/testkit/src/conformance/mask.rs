//! Conformance of `mask_logits` (structured output): the verb against its host definition
//! (`ingot_tensor::sampling::mask_row`), bit for bit, on random logits and random masks,
//! with vocabulary sizes on and off word boundaries, all-allowed and single-token rows,
//! and the choice verbs run on the masked result never picking a masked token.

use ingot_tensor::sampling::{argmax_row, mask_row, mask_words, sample_params, sample_row};
use ingot_tensor::{Backend, BackendError, DType, Op, Shape};

use super::{assert_bits, f32t, u32t};
use crate::Rng;

pub fn mask_logits_matches_its_definition<B: Backend>(be: &B) {
    let mut rng = Rng::new(77);
    for (r, v) in [
        (1, 1),
        (3, 31),
        (4, 32),
        (5, 33),
        (2, 257),
        (7, 1000),
        (2, 49_152),
    ] {
        let w = mask_words(v);
        let x = rng.vec(r * v);
        let mut bits = Vec::with_capacity(r * w);
        for row in 0..r {
            for word in 0..w {
                // Row 0 allows everything, row 1 one token, the rest random bits (with the
                // bits past V set too, which must be ignored).
                let b = match row {
                    0 => u32::MAX,
                    1 => {
                        let only = (7 * v / 11) as u32;
                        if only / 32 == word as u32 {
                            1 << (only % 32)
                        } else {
                            0
                        }
                    }
                    _ => rng.next_u64() as u32,
                };
                bits.push(b);
            }
        }
        let got = be
            .mask_logits(&f32t(be, &x, &[r, v]), &u32t(be, &bits, &[r, w]))
            .unwrap();
        assert_eq!((got.dtype(), got.dims()), (DType::F32, &[r, v][..]));
        let mut want = x.clone();
        for (row, m) in want.chunks_mut(v).zip(bits.chunks(w)) {
            mask_row(row, m);
        }
        assert_bits(&be.to_f32(&got).unwrap(), &want, &format!("R={r} V={v}"));
        assert_bits(&want[..v], &x[..v], "an all-allowed row is unchanged");

        // The choice verbs on masked rows pick allowed tokens only.
        let allowed = |row: usize, t: u32| bits[row * w + t as usize / 32] >> (t % 32) & 1 == 1;
        let ids = be.to_u32(&be.argmax(&got).unwrap()).unwrap();
        let prm: Vec<u32> = (0..r)
            .flat_map(|i| sample_params(0.9, 0, 1.0, 0.0, 5, i as u32))
            .collect();
        let drawn = be
            .to_u32(&be.sample(&got, &u32t(be, &prm, &[r, 8])).unwrap())
            .unwrap();
        for row in 0..r {
            let masked = &want[row * v..(row + 1) * v];
            if masked.iter().all(|x| *x == f32::NEG_INFINITY) {
                continue; // random bits may allow nothing in a tiny row
            }
            assert_eq!(ids[row], argmax_row(masked), "argmax R={r} V={v} row {row}");
            assert!(allowed(row, ids[row]), "argmax R={r} V={v} row {row}");
            let p = &prm[row * 8..(row + 1) * 8];
            assert_eq!(
                drawn[row],
                sample_row(masked, p),
                "sample R={r} V={v} row {row}"
            );
            assert!(allowed(row, drawn[row]), "sample R={r} V={v} row {row}");
        }
        if v > 1 {
            assert_eq!(ids[1], (7 * v / 11) as u32, "the single allowed token");
        }
    }
    let none = be
        .mask_logits(&f32t(be, &[], &[0, 5]), &u32t(be, &[], &[0, 1]))
        .unwrap();
    assert_eq!(be.to_f32(&none).unwrap(), Vec::<f32>::new());
    assert!(be.supports(Op::MaskLogits, DType::F32) && !be.supports(Op::MaskLogits, DType::F16));
    let half = be
        .from_f32(&[0.5; 4], Shape::new([1, 4]), DType::F16)
        .unwrap();
    assert!(matches!(
        be.mask_logits(&half, &u32t(be, &[1], &[1, 1])),
        Err(BackendError::Unsupported {
            op: Op::MaskLogits,
            ..
        })
    ));
    be.sync().unwrap();
}
