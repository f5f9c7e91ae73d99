//! Test support shared by the backend and engine test suites (dev-dependency only, never
//! published). Most of it works on host data (`Vec<f32>` in, `Vec<f32>`/`Vec<f64>` out)
//! so that it needs no backend type; [`conformance`] is generic over `B: Backend`.
//!
//! - [`rng`]: a seeded SplitMix64 generator for random test inputs;
//! - [`reference`]: naive, f64-accumulating kernels the backends are checked against;
//! - [`paged`]: random varlen batches whose KV blocks are scattered over a shuffled pool;
//! - [`fixtures`]: the transformers references of the tiny models under `testdata/`;
//! - [`conformance`]: the one suite every backend runs ([`backend_conformance!`]).

pub mod conformance;
pub mod fixtures;
pub mod paged;
pub mod reference;
pub mod rng;

pub use rng::Rng;
