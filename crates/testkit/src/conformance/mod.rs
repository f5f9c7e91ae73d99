//! The backend conformance suite: one definition of what every backend must do, run by
//! every backend's test crate through one macro, [`crate::backend_conformance!`]. A case is
//! a function generic over `B: Backend` that checks a verb against its host definition
//! (the naive references of [`crate::reference`], `ingot_tensor::sampling`), so a backend
//! is held to the definition itself, not to another backend. Comparisons of one backend
//! with another (the GPU against the CPU on large random shapes, kernel variants, split
//! paths) stay in that backend's own tests.
//!
//! Tolerances: 1e-5 (relative to max(|ref|, 1)) for f32 arithmetic against f64
//! references; copies, gathers and single f32 adds exact; choices (argmax) exact; f16
//! caches: the exact round-to-nearest-even bits, and attention over them within 2e-3 of
//! the unrounded reference.
//!
//! Modules: `verbs` (data movement, `supports`, the dense verbs, argmax), `attention`
//! (kv_write and paged_attention on [`crate::paged`] scenes, through [`Paged`]), `blocks`
//! (embedding and the matmul verbs over weights kept in GGUF blocks, for each format the
//! backend reads), `moe` (routing and the expert verb; its f64 reference allows 1e-4),
//! `mask` (`mask_logits`, structured output's token masks).

mod attention;
mod blocks;
mod mask;
mod moe;
mod verbs;

pub use attention::{
    Paged, attention_is_batch_invariant, attention_matches_reference,
    f16_cache_is_the_f32_cache_of_rounded_values, f16_kv_write_rounds_to_nearest_even,
    kv_write_fills_exactly_the_mapped_slots,
};
pub use blocks::{block_embedding_decodes_exactly, block_matmul_matches_reference, random_blocks};
pub use mask::mask_logits_matches_its_definition;
pub use moe::{
    moe_experts_add_matches_reference, moe_is_batch_invariant, moe_route_matches_its_definition,
};
pub use verbs::{
    argmax_matches_its_definition, checks_run_before_the_backend, data_movement_round_trips,
    embedding_gathers_rows, gather_rows_and_add_are_exact, gelu_tanh_mul_matches_reference,
    rms_norm_matches_reference, rope_matches_reference, scale_is_one_rounding,
    silu_mul_matches_reference, supports_is_truthful,
};

use ingot_tensor::{Backend, DType, Shape, Tensor};

/// An f32 tensor of `data` with `dims`.
pub fn f32t<B: Backend>(be: &B, data: &[f32], dims: &[usize]) -> Tensor<B> {
    be.from_f32(data, Shape::new(dims), DType::F32).unwrap()
}

/// A u32 tensor of `data` with `dims`.
pub fn u32t<B: Backend>(be: &B, data: &[u32], dims: &[usize]) -> Tensor<B> {
    be.from_u32(data, Shape::new(dims)).unwrap()
}

/// |got - want| <= tol * max(|want|, 1) for every element (NaN fails).
#[track_caller]
pub fn assert_close(got: &[f32], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        assert!(
            err <= tol * w.abs().max(1.0),
            "{what}: element {i}: got {g}, want {w} (tolerance {tol:e})"
        );
    }
}

/// Bitwise equality, NaNs included.
#[track_caller]
pub fn assert_bits(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.to_bits(), w.to_bits(), "{what}: element {i}: {g} vs {w}");
    }
}

/// Runs the whole suite as `#[test]`s in a module `conformance` of the calling test crate.
/// `$backends` is an expression giving the backends under test (an iterable of `B`, e.g.
/// one instance per instruction set, or none when no GPU adapter exists); each case runs
/// on each of them.
#[macro_export]
macro_rules! backend_conformance {
    ($backends:expr) => {
        mod conformance {
            #[allow(unused_imports)]
            use super::*;

            $crate::backend_conformance!(@cases $backends;
                supports_is_truthful,
                data_movement_round_trips,
                rms_norm_matches_reference,
                rope_matches_reference,
                embedding_gathers_rows,
                silu_mul_matches_reference,
                gelu_tanh_mul_matches_reference,
                scale_is_one_rounding,
                gather_rows_and_add_are_exact,
                argmax_matches_its_definition,
                attention_matches_reference,
                attention_is_batch_invariant,
                kv_write_fills_exactly_the_mapped_slots,
                f16_cache_is_the_f32_cache_of_rounded_values,
                f16_kv_write_rounds_to_nearest_even,
                moe_route_matches_its_definition,
                moe_experts_add_matches_reference,
                moe_is_batch_invariant,
                mask_logits_matches_its_definition,
                block_embedding_decodes_exactly,
                block_matmul_matches_reference,
            );

            /// The trait runs `ingot_tensor::check` before the backend's implementation.
            #[test]
            #[should_panic(expected = "matmul: x [2, 3] vs w [4, 5]")]
            fn checks_run_before_the_backend() {
                match IntoIterator::into_iter($backends).next() {
                    Some(be) => $crate::conformance::checks_run_before_the_backend(&be),
                    None => panic!("matmul: x [2, 3] vs w [4, 5] (no backend to run on)"),
                }
            }
        }
    };
    (@cases $backends:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                IntoIterator::into_iter($backends)
                    .for_each(|be| $crate::conformance::$case(&be));
            }
        )*
    };
}
