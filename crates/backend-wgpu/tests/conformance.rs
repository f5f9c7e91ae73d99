//! The backend conformance suite (`ingot_testkit::conformance`) on the GPU backend, outputs
//! poisoned first (see `common`); skipped loudly without an adapter unless
//! `INGOT_REQUIRE_GPU=1`.

mod common;

ingot_testkit::backend_conformance!(common::gpu());
