//! The device-neutral vocabulary of Ingot: [`DType`], [`Shape`], [`Tensor`] and the
//! [`Backend`] trait (the verbs of DESIGN.md §5).
//!
//! Model code is written once, generic over `B: Backend`. A backend owns its storage type
//! (host vectors on the CPU, buffers on a GPU); a [`Tensor`] pairs that storage with a shape
//! and dtype, always contiguous and row-major. Shape and dtype preconditions of every verb
//! live in [`check`], and the trait's provided verbs run them (`#[track_caller]` asserts)
//! before the backend's `*_impl` touches data: a wrong shape is a bug in the caller and
//! must never reach a kernel.

pub mod backend;
pub mod check;
mod dtype;
pub mod moe;
pub mod quant;
pub mod sampling;
mod shape;

pub use backend::{
    AttentionMeta, AttentionParams, Backend, BackendError, Counters, MoeExperts, MoeRoutes,
    MoeShared, Op, QkvHeads, RopeStyle,
};
pub use dtype::DType;
pub use shape::Shape;

/// A contiguous, row-major tensor living on backend `B`.
pub struct Tensor<B: Backend + ?Sized> {
    storage: B::Storage,
    shape: Shape,
    dtype: DType,
}

impl<B: Backend + ?Sized> Tensor<B> {
    /// Wraps backend storage. Backends call this; the storage must hold `shape.numel()`
    /// elements of `dtype`.
    pub fn from_parts(storage: B::Storage, shape: Shape, dtype: DType) -> Self {
        Self {
            storage,
            shape,
            dtype,
        }
    }

    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    pub fn dims(&self) -> &[usize] {
        self.shape.dims()
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn numel(&self) -> usize {
        self.shape.numel()
    }

    pub fn storage(&self) -> &B::Storage {
        &self.storage
    }

    pub fn storage_mut(&mut self) -> &mut B::Storage {
        &mut self.storage
    }

    pub fn into_storage(self) -> B::Storage {
        self.storage
    }

    /// Reinterprets the same contiguous data with another shape of equal element count.
    #[track_caller]
    pub fn reshape(self, shape: impl Into<Shape>) -> Self {
        let shape = shape.into();
        assert_eq!(
            shape.numel(),
            self.shape.numel(),
            "reshape {} -> {shape}: element counts differ",
            self.shape
        );
        Self { shape, ..self }
    }
}

impl<B: Backend + ?Sized> std::fmt::Debug for Tensor<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor<{:?}, {}>", self.dtype, self.shape)
    }
}
