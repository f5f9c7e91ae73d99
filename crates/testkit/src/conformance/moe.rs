//! Conformance of the mixture-of-experts verbs: `moe_route` against its definition
//! ([`ingot_tensor::moe::route_row`]: ids exact, weights within 1e-5), `moe_experts_add`
//! against an f64 reference of its definition (within 1e-4 of max(|ref|, 1): two chained
//! f32 projections, a SiLU and a weighted sum), on random inputs, dense weights of every
//! float dtype and, where the backend reads them, Q8_0 and Q4_0 expert blocks; the routing
//! edge cases (tied logits, every token to one expert, experts without tokens, empty slots,
//! one expert); and batch invariance: a token's routes and output are the same bits alone
//! and among others.

use ingot_tensor::moe::{MoeRouting, MoeScoring, route_row};
use ingot_tensor::{Backend, DType, MoeExperts, MoeRoutes, MoeShared, Op, Shape, Tensor};

use super::{assert_bits, assert_close, f32t, u32t};
use crate::Rng;

/// The host definition over every row of `logits` [T, E].
fn route_all(logits: &[f32], e: usize, r: MoeRouting) -> (Vec<u32>, Vec<f32>) {
    let t = logits.len() / e;
    let (mut ids, mut w) = (vec![0; t * r.top_k], vec![0.0; t * r.top_k]);
    for i in 0..t {
        let s = i * r.top_k..(i + 1) * r.top_k;
        route_row(
            &logits[i * e..(i + 1) * e],
            r,
            &mut ids[s.clone()],
            &mut w[s],
        );
    }
    (ids, w)
}

fn routings(k: usize) -> Vec<MoeRouting> {
    let mut v = Vec::new();
    for scoring in [MoeScoring::Softmax, MoeScoring::Sigmoid] {
        for renormalize in [false, true] {
            v.push(MoeRouting {
                top_k: k,
                scoring,
                renormalize,
            });
        }
    }
    v
}

/// `moe_route` picks exactly the definition's experts, best first, ties to the lower index,
/// with its weights; each row independent of the others.
pub fn moe_route_matches_its_definition<B: Backend>(be: &B) {
    let mut rng = Rng::new(60);
    assert!(be.supports(Op::MoeRoute, DType::F32) && !be.supports(Op::MoeRoute, DType::F16));
    for (t, e, k) in [
        (1, 8, 2),
        (37, 8, 2),
        (5, 60, 4),
        (3, 64, 8),
        (9, 4, 4),
        (2, 1, 1),
    ] {
        // Random logits, and logits from a set of three values (ties everywhere).
        let random = rng.vec(t * e).iter().map(|v| 4.0 * v).collect::<Vec<_>>();
        let tied: Vec<f32> = (0..t * e).map(|_| rng.below(3) as f32 * 0.5).collect();
        for (kind, logits) in [("random", random), ("tied", tied)] {
            for r in routings(k) {
                let what = format!("{kind} T={t} E={e} {r:?}");
                let got = be.moe_route(&f32t(be, &logits, &[t, e]), r).unwrap();
                assert_eq!(got.ids.dims(), [t, k], "{what}");
                let (ids, w) = route_all(&logits, e, r);
                assert_eq!(be.to_u32(&got.ids).unwrap(), ids, "{what}: ids");
                let want: Vec<f64> = w.iter().map(|&v| v as f64).collect();
                assert_close(&be.to_f32(&got.weights).unwrap(), &want, 1e-5, &what);
            }
        }
    }
    // Ties resolve to the lower index: all equal logits pick experts 0, 1, 2.
    let r = MoeRouting {
        top_k: 3,
        scoring: MoeScoring::Softmax,
        renormalize: false,
    };
    let got = be.moe_route(&f32t(be, &[0.25; 12], &[2, 6]), r).unwrap();
    assert_eq!(be.to_u32(&got.ids).unwrap(), [0, 1, 2, 0, 1, 2]);
    // Batch invariance: a row routed alone gives the bits it gets among others.
    let (t, e) = (17, 16);
    let logits = rng.vec(t * e);
    for r in routings(3) {
        let all = be.moe_route(&f32t(be, &logits, &[t, e]), r).unwrap();
        let (ids, w) = (
            be.to_u32(&all.ids).unwrap(),
            be.to_f32(&all.weights).unwrap(),
        );
        for row in [0, 9, 16] {
            let one = f32t(be, &logits[row * e..(row + 1) * e], &[1, e]);
            let one = be.moe_route(&one, r).unwrap();
            assert_eq!(be.to_u32(&one.ids).unwrap(), ids[row * 3..row * 3 + 3]);
            assert_bits(
                &be.to_f32(&one.weights).unwrap(),
                &w[row * 3..row * 3 + 3],
                &format!("row {row} alone, {r:?}"),
            );
        }
    }
}

/// One MoE problem on the host: weights as the device will hold them (already rounded to
/// their storage), and the f64 reference of `moe_experts_add`.
struct Problem {
    t: usize,
    h: usize,
    i: usize,
    e: usize,
    k: usize,
    x: Vec<f32>,                                  // [T, H]
    gate_up: Vec<f32>,                            // [E, 2I, H]
    down: Vec<f32>,                               // [E, H, I]
    ids: Vec<u32>,                                // [T, k]
    weights: Vec<f32>,                            // [T, k]
    residual: Vec<f32>,                           // [T, H]
    shared: Option<(Vec<f32>, Option<Vec<f32>>)>, // out [T, H], gate [T]
}

impl Problem {
    fn random(rng: &mut Rng, t: usize, h: usize, i: usize, e: usize, k: usize) -> Problem {
        let ids = (0..t * k).map(|_| rng.below(e) as u32).collect();
        Problem {
            t,
            h,
            i,
            e,
            k,
            x: rng.vec(t * h),
            gate_up: rng.vec(e * 2 * i * h).iter().map(|v| v * 0.5).collect(),
            down: rng.vec(e * h * i).iter().map(|v| v * 0.5).collect(),
            ids,
            weights: rng.vec(t * k).iter().map(|v| v.abs()).collect(),
            residual: rng.vec(t * h),
            shared: None,
        }
    }

    /// `residual + moe(x)` in f64, as `Backend::moe_experts_add` defines it.
    fn reference(&self) -> Vec<f64> {
        let (h, i, k) = (self.h, self.i, self.k);
        let mut out = Vec::with_capacity(self.t * h);
        for t in 0..self.t {
            let x = &self.x[t * h..(t + 1) * h];
            let mut acc = vec![0.0f64; h];
            for j in 0..k {
                let e = self.ids[t * k + j] as usize;
                if e >= self.e {
                    continue;
                }
                let gu = &self.gate_up[e * 2 * i * h..(e + 1) * 2 * i * h];
                let dot = |row: &[f32], v: &[f64]| -> f64 {
                    row.iter().zip(v).map(|(&a, &b)| a as f64 * b).sum()
                };
                let xd: Vec<f64> = x.iter().map(|&v| v as f64).collect();
                let act: Vec<f64> = (0..i)
                    .map(|n| {
                        let g = dot(&gu[n * h..(n + 1) * h], &xd);
                        let u = dot(&gu[(i + n) * h..(i + n + 1) * h], &xd);
                        g / (1.0 + (-g).exp()) * u
                    })
                    .collect();
                let dw = &self.down[e * h * i..(e + 1) * h * i];
                for (c, a) in acc.iter_mut().enumerate() {
                    *a += self.weights[t * k + j] as f64 * dot(&dw[c * i..(c + 1) * i], &act);
                }
            }
            if let Some((so, sg)) = &self.shared {
                let g = sg
                    .as_ref()
                    .map_or(1.0, |g| 1.0 / (1.0 + (-(g[t] as f64)).exp()));
                for (c, a) in acc.iter_mut().enumerate() {
                    *a += g * so[t * h + c] as f64;
                }
            }
            out.extend(
                acc.iter()
                    .enumerate()
                    .map(|(c, a)| self.residual[t * h + c] as f64 + a),
            );
        }
        out
    }

    /// Runs the verb with the weights in `dtype` (already representable in it) and returns
    /// the updated residual.
    fn run<B: Backend>(&self, be: &B, gate_up: &Tensor<B>, down: &Tensor<B>) -> Vec<f32> {
        let (t, h, k) = (self.t, self.h, self.k);
        let routes = MoeRoutes {
            ids: u32t(be, &self.ids, &[t, k]),
            weights: f32t(be, &self.weights, &[t, k]),
        };
        let x = f32t(be, &self.x, &[t, h]);
        let mut residual = f32t(be, &self.residual, &[t, h]);
        let shared_out = self.shared.as_ref().map(|(o, _)| f32t(be, o, &[t, h]));
        let shared_gate = self
            .shared
            .as_ref()
            .and_then(|(_, g)| g.as_ref())
            .map(|g| f32t(be, g, &[t, 1]));
        let shared = shared_out.as_ref().map(|out| MoeShared {
            out,
            gate: shared_gate.as_ref(),
        });
        be.moe_experts_add(
            &x,
            &routes,
            MoeExperts { gate_up, down },
            shared,
            &mut residual,
        )
        .unwrap();
        be.to_f32(&residual).unwrap()
    }

    fn dense<B: Backend>(&self, be: &B, dtype: DType) -> (Tensor<B>, Tensor<B>) {
        let (h, i, e) = (self.h, self.i, self.e);
        let gu = be
            .from_f32(&self.gate_up, Shape::new([e, 2 * i, h]), dtype)
            .unwrap();
        let down = be
            .from_f32(&self.down, Shape::new([e, h, i]), dtype)
            .unwrap();
        (gu, down)
    }

    /// Rounds the weights to `dtype` on the host, as the device stores them.
    fn round_weights(&mut self, dtype: DType) {
        let round = |v: &mut Vec<f32>| {
            for x in v.iter_mut() {
                *x = match dtype {
                    DType::F16 => half::f16::from_f32(*x).to_f32(),
                    DType::BF16 => half::bf16::from_f32(*x).to_f32(),
                    _ => *x,
                };
            }
        };
        round(&mut self.gate_up);
        round(&mut self.down);
    }
}

/// `moe_experts_add` against the f64 reference: random routes, dense weights of every float
/// dtype, with and without a (gated) shared expert, and the routing edge cases.
pub fn moe_experts_add_matches_reference<B: Backend>(be: &B) {
    let mut rng = Rng::new(61);
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        assert!(be.supports(Op::MoeExperts, dtype), "{dtype}");
        for (t, h, i, e, k) in [(1, 64, 48, 8, 2), (19, 64, 32, 4, 2), (6, 40, 24, 60, 4)] {
            let mut p = Problem::random(&mut rng, t, h, i, e, k);
            p.round_weights(dtype);
            for shared in 0..3 {
                p.shared = match shared {
                    0 => None,
                    1 => Some((rng.vec(t * h), None)),
                    _ => Some((rng.vec(t * h), Some(rng.vec(t)))),
                };
                let (gu, down) = p.dense(be, dtype);
                let what = format!("{dtype} T={t} H={h} I={i} E={e} k={k} shared={shared}");
                assert_close(&p.run(be, &gu, &down), &p.reference(), 1e-4, &what);
            }
        }
    }
    // Edge cases on f32 weights.
    let (h, i, e, k) = (32, 16, 6, 2);
    let mut p = Problem::random(&mut rng, 11, h, i, e, k);
    let cases: Vec<(&str, Vec<u32>)> = vec![
        // Every slot of every token to one expert (also: one expert's rows span tiles).
        ("one expert for all", vec![3; 11 * k]),
        // Only experts 0 and 5 have tokens; 1..=4 have none.
        (
            "experts without tokens",
            (0..11 * k)
                .map(|s| if s % 2 == 0 { 0 } else { 5 })
                .collect(),
        ),
        // Empty slots (id E) are skipped.
        (
            "empty slots",
            (0..11 * k)
                .map(|s| if s % 3 == 0 { e as u32 } else { (s % e) as u32 })
                .collect(),
        ),
    ];
    for (what, ids) in cases {
        p.ids = ids;
        let (gu, down) = p.dense(be, DType::F32);
        assert_close(&p.run(be, &gu, &down), &p.reference(), 1e-4, what);
    }
    // Routes from the router itself, on tied logits.
    let t = 7;
    let tied: Vec<f32> = (0..t * e).map(|_| rng.below(2) as f32).collect();
    let r = MoeRouting {
        top_k: k,
        scoring: MoeScoring::Softmax,
        renormalize: true,
    };
    let mut p = Problem::random(&mut rng, t, h, i, e, k);
    (p.ids, p.weights) = route_all(&tied, e, r);
    let routes = be.moe_route(&f32t(be, &tied, &[t, e]), r).unwrap();
    assert_eq!(be.to_u32(&routes.ids).unwrap(), p.ids, "tied routes");
    let (gu, down) = p.dense(be, DType::F32);
    assert_close(&p.run(be, &gu, &down), &p.reference(), 1e-4, "tied logits");
    // Expert blocks where the backend reads them (Q8_0, and Q4_0 for a 4-bit format),
    // uploaded as stacks [E, N, K], against the dequantized weights.
    for dtype in [DType::Q8_0, DType::Q4_0] {
        if !be.supports(Op::MoeExperts, dtype) {
            continue;
        }
        let (h, i, e) = (64, 32, 4);
        let mut p = Problem::random(&mut rng, 9, h, i, e, 2);
        let (gu_bytes, down_bytes) = match dtype {
            DType::Q8_0 => (
                q8_0_blocks(&mut rng, e * 2 * i * h),
                q8_0_blocks(&mut rng, e * h * i),
            ),
            _ => (
                super::random_blocks(&mut rng, dtype, e * 2 * i, h),
                super::random_blocks(&mut rng, dtype, e * h, i),
            ),
        };
        p.gate_up = vec![0.0; e * 2 * i * h];
        p.down = vec![0.0; e * h * i];
        ingot_tensor::quant::dequantize(dtype, &gu_bytes, &mut p.gate_up);
        ingot_tensor::quant::dequantize(dtype, &down_bytes, &mut p.down);
        let gu = be
            .from_blocks(&gu_bytes, Shape::new([e, 2 * i, h]), dtype)
            .unwrap();
        let down = be
            .from_blocks(&down_bytes, Shape::new([e, h, i]), dtype)
            .unwrap();
        let what = format!("{dtype} experts");
        assert_close(&p.run(be, &gu, &down), &p.reference(), 1e-4, &what);
    }
    be.sync().unwrap();
}

/// `n` elements of random Q8_0 blocks: an f16 scale around 1/64 and 32 random i8 each.
fn q8_0_blocks(rng: &mut Rng, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n / 32 * 34);
    for _ in 0..n / 32 {
        let d = half::f16::from_f32((1.0 + rng.uniform()) / 128.0);
        out.extend_from_slice(&d.to_le_bytes());
        out.extend((0..32).map(|_| (rng.below(255) as i32 - 127) as i8 as u8));
    }
    out
}

/// A token's output is the same bits alone (T = 1) as among others, wherever it sits and
/// whichever experts the others use.
pub fn moe_is_batch_invariant<B: Backend>(be: &B) {
    let mut rng = Rng::new(62);
    let (t, h, i, e, k) = (21, 64, 40, 8, 2);
    let mut p = Problem::random(&mut rng, t, h, i, e, k);
    p.shared = Some((rng.vec(t * h), Some(rng.vec(t))));
    for dtype in [DType::F32, DType::F16] {
        p.round_weights(dtype);
        let (gu, down) = p.dense(be, dtype);
        let all = p.run(be, &gu, &down);
        for row in [0, 10, 20] {
            let mut one = Problem {
                t: 1,
                x: p.x[row * h..(row + 1) * h].to_vec(),
                ids: p.ids[row * k..(row + 1) * k].to_vec(),
                weights: p.weights[row * k..(row + 1) * k].to_vec(),
                residual: p.residual[row * h..(row + 1) * h].to_vec(),
                shared: None,
                gate_up: Vec::new(),
                down: Vec::new(),
                ..p
            };
            let (so, sg) = p.shared.as_ref().unwrap();
            one.shared = Some((
                so[row * h..(row + 1) * h].to_vec(),
                sg.as_ref().map(|g| vec![g[row]]),
            ));
            assert_bits(
                &one.run(be, &gu, &down),
                &all[row * h..(row + 1) * h],
                &format!("{dtype}: token {row} alone vs among {t}"),
            );
        }
    }
}
