//! The backend conformance suite (`ingot_testkit::conformance`) on the CPU backend, once
//! per instruction set this CPU has.

mod common;

ingot_testkit::backend_conformance!(common::backends());
