//! Recording and submission: verbs record their dispatches into one compute pass of one
//! pending command encoder, submitted when a read-back needs results or after
//! [`FLUSH_EVERY`] dispatches, so the GPU starts on a long step while the CPU is still
//! encoding it (GPU-NOTES: submitting every ~30 dispatches overlapped encoding with
//! execution on the H100). Buffers and tensors dropped while commands still use them stay
//! alive until those commands finish (wgpu refcounts).
//!
//! Also the counters of [`ingot_tensor::Counters`]: dispatches recorded and host time spent
//! blocked on the GPU.

use std::sync::atomic::{AtomicU64, Ordering};

use ingot_tensor::BackendError;
use ingot_tensor::backend::Result;

use super::{Gpu, lock};

/// Dispatches recorded before the pending encoder is submitted.
pub(super) const FLUSH_EVERY: usize = 32;

/// Commands recorded but not yet submitted: one encoder with one open compute pass that
/// every dispatch joins (wgpu orders the dispatches of a pass and puts barriers between
/// dependent ones, as between passes).
#[derive(Default)]
pub(super) struct Pending {
    encoder: Option<wgpu::CommandEncoder>,
    /// Recording into `encoder`; ended before the encoder is finished.
    pass: Option<wgpu::ComputePass<'static>>,
    dispatches: usize,
    /// Per-kernel timestamps (`INGOT_WGPU_PROFILE`): each dispatch in a pass of its own.
    pub profile: Option<super::profile::Profiler>,
}

/// Running totals since the device opened.
#[derive(Default)]
pub(super) struct Tally {
    /// Dispatches recorded.
    dispatched: AtomicU64,
    /// Nanoseconds the host spent blocked on the GPU (read-backs, `sync`).
    waited_ns: AtomicU64,
}

impl Gpu {
    /// A 1-D or 2-D grid covering `groups` workgroups within the per-dimension limit; the
    /// shaders linearise it as `wg.y * num_workgroups.x + wg.x` and skip the excess.
    pub fn grid(&self, groups: u64) -> Result<(u32, u32)> {
        let max = self.max_workgroups as u64;
        if groups <= max {
            return Ok((groups.max(1) as u32, 1));
        }
        let y = groups.div_ceil(max);
        if y > max {
            return Err(BackendError::Device(format!(
                "{groups} workgroups exceed the adapter's dispatch limits"
            )));
        }
        Ok((max as u32, y as u32))
    }

    /// Records one dispatch of `pipeline` with `buffers` bound at their binding numbers.
    pub fn dispatch(
        &self,
        label: &str,
        pipeline: &wgpu::ComputePipeline,
        buffers: &[(u32, &wgpu::Buffer)],
        groups: (u32, u32, u32),
    ) -> Result<()> {
        self.check()?;
        if groups.0 > self.max_workgroups
            || groups.1 > self.max_workgroups
            || groups.2 > self.max_workgroups
        {
            return Err(BackendError::Device(format!(
                "{label}: grid {groups:?} exceeds the adapter's limit of {} per dimension",
                self.max_workgroups
            )));
        }
        let bind_group = self.bind_group(label, pipeline, buffers);
        let mut pending = lock(&self.pending);
        if pending.profile.is_some() {
            drop(pending.pass.take());
            let p = &mut *pending;
            let encoder = p.encoder.get_or_insert_with(|| {
                self.device
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                        label: Some("step"),
                    })
            });
            let profile = p.profile.as_mut().expect("checked above");
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(label),
                timestamp_writes: Some(profile.next(label, groups)),
            });
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(groups.0, groups.1, groups.2);
        } else {
            self.record(&mut pending, pipeline, &bind_group, groups);
        }
        pending.dispatches += 1;
        self.tally.dispatched.fetch_add(1, Ordering::Relaxed);
        if pending.dispatches >= FLUSH_EVERY {
            self.submit(&mut pending, None);
        }
        drop(pending);
        self.check()
    }

    /// Records one dispatch into the pending encoder's open compute pass.
    fn record(
        &self,
        pending: &mut Pending,
        pipeline: &wgpu::ComputePipeline,
        bind_group: &wgpu::BindGroup,
        groups: (u32, u32, u32),
    ) {
        if pending.pass.is_none() {
            let encoder = pending.encoder.get_or_insert_with(|| {
                self.device
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                        label: Some("step"),
                    })
            });
            let pass = encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("step"),
                    timestamp_writes: None,
                })
                .forget_lifetime();
            pending.pass = Some(pass);
        }
        let pass = pending.pass.as_mut().expect("opened above");
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, bind_group, &[]);
        pass.dispatch_workgroups(groups.0, groups.1, groups.2);
    }

    /// Submits the pending encoder, then `extra` (a copy that must run after it).
    pub(super) fn submit(&self, pending: &mut Pending, extra: Option<wgpu::CommandEncoder>) {
        let mut buffers = Vec::with_capacity(2);
        drop(pending.pass.take()); // ends the pass, releasing the encoder
        if let Some(mut e) = pending.encoder.take() {
            if let Some(p) = &pending.profile {
                p.resolve(&mut e);
            }
            buffers.push(e.finish());
        }
        if let Some(e) = extra {
            buffers.push(e.finish());
        }
        pending.dispatches = 0;
        if !buffers.is_empty() {
            self.queue.submit(buffers);
        }
        if let Some(p) = pending.profile.as_mut() {
            p.collect(&self.device);
        }
    }

    /// Blocks until the GPU has finished everything submitted, counting the time.
    pub(super) fn wait(&self) -> Result<()> {
        let start = std::time::Instant::now();
        let r = self
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| BackendError::Device(format!("waiting for the GPU: {e}")));
        self.tally
            .waited_ns
            .fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        r.map(|_| ())
    }

    /// Seconds the host has spent blocked on the GPU since the device opened.
    pub fn waited_seconds(&self) -> f64 {
        self.tally.waited_ns.load(Ordering::Relaxed) as f64 * 1e-9
    }

    /// Dispatches recorded since the device opened.
    pub fn dispatched(&self) -> u64 {
        self.tally.dispatched.load(Ordering::Relaxed)
    }

    /// Submits everything recorded so far.
    pub fn flush(&self) -> Result<()> {
        let mut pending = lock(&self.pending);
        self.submit(&mut pending, None);
        drop(pending);
        self.check()
    }

    /// Submits everything recorded so far and waits until the GPU has finished it.
    pub fn sync(&self) -> Result<()> {
        self.flush()?;
        self.wait()?;
        self.check()
    }
}
