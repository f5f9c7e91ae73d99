//! Per-kernel GPU time from timestamp queries, for finding where a step's GPU time goes
//! (`INGOT_WGPU_PROFILE=FILE`, on adapters with TIMESTAMP_QUERY; off otherwise).
//!
//! With the profiler on, every dispatch runs in a compute pass of its own whose beginning
//! and end write timestamps; each submission resolves them, waits for the GPU and adds each
//! dispatch's time to a total per (label, grid). At most once a second the totals are
//! written to FILE as a table, whole (so the file is complete even if the process dies
//! without unwinding). The waits and the extra passes slow the step down: the table says
//! where GPU time goes, not how fast a step runs; `ingot bench batched` without the
//! variable measures that.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

/// Timestamp pairs per submission: the pending encoder is submitted every
/// `submit::FLUSH_EVERY` dispatches (and at read-backs), so this bounds one batch.
const CAPACITY: u32 = super::submit::FLUSH_EVERY as u32;

/// The variable naming the output file.
pub(super) const ENV: &str = "INGOT_WGPU_PROFILE";

type Key = (String, (u32, u32, u32));

pub(super) struct Profiler {
    queries: wgpu::QuerySet,          // [2 * CAPACITY] begin, end per dispatch
    resolved: wgpu::Buffer,           // [2 * CAPACITY] u64 ticks
    staging: wgpu::Buffer,            // mappable copy of `resolved`
    period_ns: f64,                   // nanoseconds per tick
    batch: Vec<Key>,                  // dispatches recorded since the last submission
    totals: HashMap<Key, (u64, f64)>, // dispatches, nanoseconds
    path: PathBuf,
    written: Instant,
}

impl Profiler {
    /// A profiler writing to `path`, on a device opened with TIMESTAMP_QUERY.
    pub fn new(device: &wgpu::Device, queue: &wgpu::Queue, path: PathBuf) -> Self {
        let bytes = 16 * CAPACITY as u64;
        let buffer = |usage| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("profile"),
                size: bytes,
                usage,
                mapped_at_creation: false,
            })
        };
        Profiler {
            queries: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("profile"),
                ty: wgpu::QueryType::Timestamp,
                count: 2 * CAPACITY,
            }),
            resolved: buffer(wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC),
            staging: buffer(wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST),
            period_ns: f64::from(queue.get_timestamp_period()),
            batch: Vec::new(),
            totals: HashMap::new(),
            path,
            written: Instant::now(),
        }
    }

    /// The timestamp writes of the next dispatch, labelled `label` with grid `groups`.
    pub fn next(
        &mut self,
        label: &str,
        groups: (u32, u32, u32),
    ) -> wgpu::ComputePassTimestampWrites<'_> {
        let i = self.batch.len() as u32;
        self.batch.push((label.to_string(), groups));
        wgpu::ComputePassTimestampWrites {
            query_set: &self.queries,
            beginning_of_pass_write_index: Some(2 * i),
            end_of_pass_write_index: Some(2 * i + 1),
        }
    }

    /// Records the resolution of this batch's timestamps into `encoder` (before it is
    /// finished); `collect` reads them after the submission.
    pub fn resolve(&self, encoder: &mut wgpu::CommandEncoder) {
        let n = 2 * self.batch.len() as u32;
        if n == 0 {
            return;
        }
        encoder.resolve_query_set(&self.queries, 0..n, &self.resolved, 0);
        encoder.copy_buffer_to_buffer(&self.resolved, 0, &self.staging, 0, 8 * n as u64);
    }

    /// After the submission that resolved this batch: waits for it, adds each dispatch's
    /// time to its total and, at most once a second, rewrites the file.
    pub fn collect(&mut self, device: &wgpu::Device) {
        if self.batch.is_empty() {
            return;
        }
        let n = 2 * self.batch.len();
        self.staging.map_async(wgpu::MapMode::Read, .., |r| {
            if let Err(e) = r {
                tracing::warn!("profile: cannot map the timestamps: {e}");
            }
        });
        if let Err(e) = device.poll(wgpu::PollType::wait_indefinitely()) {
            tracing::warn!("profile: waiting for the GPU: {e}");
        }
        if let Ok(view) = self.staging.get_mapped_range(..) {
            let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&view[..8 * n]);
            for (i, key) in self.batch.drain(..).enumerate() {
                let ns = ticks[2 * i + 1].wrapping_sub(ticks[2 * i]) as f64 * self.period_ns;
                let e = self.totals.entry(key).or_insert((0, 0.0));
                e.0 += 1;
                e.1 += ns;
            }
        }
        self.staging.unmap();
        self.batch.clear();
        if self.written.elapsed().as_secs_f64() >= 1.0 {
            self.write();
        }
    }

    /// The totals as a table, most GPU time first, then per label.
    fn write(&mut self) {
        self.written = Instant::now();
        let mut rows: Vec<_> = self.totals.iter().collect();
        rows.sort_by(|a, b| b.1.1.total_cmp(&a.1.1));
        let all: f64 = rows.iter().map(|r| r.1.1).sum();
        let mut s = String::from(
            "# GPU time per (kernel, grid), timestamp queries; one pass per dispatch\n",
        );
        let _ = writeln!(
            s,
            "# total {:.3} ms over {} dispatches",
            all * 1e-6,
            rows.iter().map(|r| r.1.0).sum::<u64>()
        );
        let _ = writeln!(
            s,
            "{:<28} {:>22} {:>9} {:>10} {:>11} {:>6}",
            "kernel", "grid", "count", "mean us", "total ms", "%"
        );
        for ((label, g), (count, ns)) in &rows {
            let _ = writeln!(
                s,
                "{label:<28} {:>22} {count:>9} {:>10.2} {:>11.3} {:>6.2}",
                format!("{}x{}x{}", g.0, g.1, g.2),
                ns / *count as f64 * 1e-3,
                ns * 1e-6,
                100.0 * ns / all
            );
        }
        let mut by_label: HashMap<&str, (u64, f64)> = HashMap::new();
        for ((label, _), (count, ns)) in &rows {
            let e = by_label.entry(label).or_insert((0, 0.0));
            e.0 += count;
            e.1 += ns;
        }
        let mut labels: Vec<_> = by_label.into_iter().collect();
        labels.sort_by(|a, b| b.1.1.total_cmp(&a.1.1));
        let _ = writeln!(
            s,
            "\n# per kernel\n{:<28} {:>9} {:>10} {:>11} {:>6}",
            "kernel", "count", "mean us", "total ms", "%"
        );
        for (label, (count, ns)) in labels {
            let _ = writeln!(
                s,
                "{label:<28} {count:>9} {:>10.2} {:>11.3} {:>6.2}",
                ns / count as f64 * 1e-3,
                ns * 1e-6,
                100.0 * ns / all
            );
        }
        if let Err(e) = std::fs::write(&self.path, s) {
            tracing::warn!("profile: cannot write {}: {e}", self.path.display());
        }
    }
}

impl Drop for Profiler {
    fn drop(&mut self) {
        self.write();
    }
}
