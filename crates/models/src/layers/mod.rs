//! Building blocks shared by every decoder family.

pub mod rope;
