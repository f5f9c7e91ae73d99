//! Read-back: a copy into a mappable staging buffer, submitted after every recorded
//! command, then a blocking wait (counted in the host-wait tally) and a map. A read-back
//! is therefore also a step boundary: it reports any failure recorded before it.

use ingot_tensor::BackendError;
use ingot_tensor::backend::Result;

use super::{Gpu, lock};

impl Gpu {
    /// Copies the first `bytes` of `src` back to the host, after every recorded command.
    pub fn read(&self, src: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        self.check()?;
        let size = bytes.max(4).div_ceil(4) * 4;
        let staging = self.scoped("read-back", size as usize, || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("read-back"),
                size,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })?;
        let mut copy = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("read"),
            });
        copy.copy_buffer_to_buffer(src, 0, &staging, 0, size);
        {
            let mut pending = lock(&self.pending);
            self.submit(&mut pending, Some(copy));
        }
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        self.check()?;
        rx.recv()
            .map_err(|_| BackendError::Device("read-back was never mapped".into()))?
            .map_err(|e| BackendError::Device(format!("read-back failed: {e}")))?;
        let out = staging
            .get_mapped_range(..)
            .map_err(|e| BackendError::Device(format!("read-back: cannot map: {e:?}")))?
            [..bytes as usize]
            .to_vec();
        staging.unmap();
        Ok(out)
    }
}
