//! Storage buffers: fresh ones (zeroed, poisoned or uploaded) and a pool of freed ones.
//!
//! Pool: allocating device memory costs far more than a small kernel (on the H100 a fresh
//! 64 MiB output cost milliseconds), and a decode step allocates the same sizes every
//! time. A dropped tensor's buffers go to a pool keyed by exact size (bounded in bytes and
//! per size) and the next verb output of that size takes one. Reuse is safe without waiting
//! for the GPU: the buffer is only ever written again by commands recorded later, which the
//! queue runs after every earlier use (wgpu orders passes on one queue); host uploads never
//! go to pooled buffers. With `poison_outputs` nothing is reused.

use std::collections::HashMap;

use ingot_tensor::BackendError;
use ingot_tensor::backend::Result;
use wgpu::util::DeviceExt;

use super::{Gpu, lock};

/// Bytes of freed buffers kept for reuse, and buffers kept per size.
const POOL_MAX_BYTES: u64 = 1 << 30;
const POOL_MAX_PER_SIZE: usize = 16;

/// Freed storage buffers by size.
#[derive(Default)]
pub(super) struct Pool {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
    bytes: u64,
}

/// `bytes` rounded up to a whole, non-empty number of 32-bit words.
fn word_size(bytes: u64) -> u64 {
    bytes.max(4).div_ceil(4) * 4
}

impl Gpu {
    /// A storage buffer of `bytes` (rounded up to a word) for a kernel to overwrite whole:
    /// from the pool when one of that size is free, else new (poisoned when the options
    /// say). Its previous contents are unspecified.
    pub fn output(&self, bytes: u64, label: &str) -> Result<wgpu::Buffer> {
        let size = word_size(bytes);
        if !self.poison {
            let mut pool = lock(&self.pool);
            if let Some(b) = pool.free.get_mut(&size).and_then(Vec::pop) {
                pool.bytes -= size;
                return Ok(b);
            }
        }
        self.storage(bytes, label, self.poison)
    }

    /// Takes back the buffer of a dropped tensor for reuse by [`Gpu::output`].
    pub fn recycle(&self, buffer: wgpu::Buffer) {
        if self.poison {
            return;
        }
        let size = buffer.size();
        let mut pool = lock(&self.pool);
        let fits = pool.bytes + size <= POOL_MAX_BYTES;
        let list = pool.free.entry(size).or_default();
        if fits && list.len() < POOL_MAX_PER_SIZE {
            list.push(buffer);
            pool.bytes += size;
            return;
        }
        drop(pool);
        // Released for good: drop the bind groups that would keep it alive.
        self.caches.forget(&buffer);
    }

    /// A storage buffer of `bytes` (rounded up to a word), all-ones bits when `poison`,
    /// zeros otherwise.
    pub fn storage(&self, bytes: u64, label: &str, poison: bool) -> Result<wgpu::Buffer> {
        self.check()?;
        let size = word_size(bytes);
        if size > self.max_binding {
            return Err(BackendError::Device(format!(
                "{label}: {size} bytes exceed the adapter's storage binding limit of {} bytes",
                self.max_binding
            )));
        }
        let buffer = self.scoped(label, size as usize, || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: poison,
            })
        })?;
        if poison {
            buffer
                .slice(..)
                .get_mapped_range_mut()
                .map_err(|e| BackendError::Device(format!("{label}: cannot map: {e:?}")))?
                .copy_from_slice(&vec![0xff; size as usize]);
            buffer.unmap();
        }
        Ok(buffer)
    }

    /// A storage buffer holding `data` (padded with zeros to a word).
    pub fn upload(&self, data: &[u8], label: &str) -> Result<wgpu::Buffer> {
        self.check()?;
        let mut padded;
        let contents = if data.len().is_multiple_of(4) && !data.is_empty() {
            data
        } else {
            padded = data.to_vec();
            padded.resize(word_size(data.len() as u64) as usize, 0);
            &padded
        };
        self.scoped(label, contents.len(), || {
            self.device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(label),
                    contents,
                    usage: wgpu::BufferUsages::STORAGE
                        | wgpu::BufferUsages::COPY_SRC
                        | wgpu::BufferUsages::COPY_DST,
                })
        })
    }
}
