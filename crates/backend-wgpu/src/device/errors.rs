//! Error capture: wgpu reports validation errors, out-of-memory and device loss
//! asynchronously.
//!
//! Allocations and pipeline creation run inside error scopes ([`super::Gpu::scoped`]) and
//! turn what they catch into a [`BackendError`] at once; anything else lands in the
//! uncaptured-error handler or the device-lost callback, which record the first failure in
//! a [`Failure`]. From then on every verb and every read-back returns that failure: a step
//! on a broken device fails, it never yields numbers.

use std::sync::{Arc, Mutex};

use ingot_tensor::BackendError;
use ingot_tensor::backend::Result;

use super::{Gpu, lock};

/// The first asynchronous failure of a device, shared with its callbacks.
#[derive(Default)]
pub(super) struct Failure(Arc<Mutex<Option<String>>>);

impl Failure {
    /// A failure state fed by `device`'s uncaptured-error handler and device-lost callback.
    pub fn watch(device: &wgpu::Device) -> Self {
        let failure = Self::default();
        let on_error = failure.0.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            tracing::error!("GPU error: {e}");
            lock(&on_error).get_or_insert_with(|| format!("GPU error: {e}"));
        }));
        let on_lost = failure.0.clone();
        device.set_device_lost_callback(move |reason, msg| {
            tracing::error!("GPU device lost ({reason:?}): {msg}");
            lock(&on_lost).get_or_insert_with(|| format!("GPU device lost ({reason:?}): {msg}"));
        });
        failure
    }

    /// The first failure recorded, if any, as an error.
    pub fn check(&self) -> Result<()> {
        match lock(&self.0).as_ref() {
            Some(msg) => Err(BackendError::Device(msg.clone())),
            None => Ok(()),
        }
    }
}

impl Gpu {
    /// The first failure recorded, if any, as an error.
    pub fn check(&self) -> Result<()> {
        self.failure.check()
    }

    /// Runs `f` inside out-of-memory and validation error scopes; a caught error becomes
    /// `what` + its message (`OutOfMemory` for the former).
    pub fn scoped<R>(&self, what: &str, bytes: usize, f: impl FnOnce() -> R) -> Result<R> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let r = f();
        let v = pollster::block_on(validation.pop());
        let o = pollster::block_on(oom.pop());
        if o.is_some() {
            return Err(BackendError::OutOfMemory { bytes });
        }
        if let Some(e) = v {
            return Err(BackendError::Device(format!("{what}: {e}")));
        }
        Ok(r)
    }
}
