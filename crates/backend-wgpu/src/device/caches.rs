//! Host-side caches that cut the cost of recording a dispatch: parameter uniforms by
//! content, each pipeline's bind group layout, and bind groups by pipeline and buffers.
//!
//! Host cost per dispatch is what limits small-batch decode (a step is ~300-400
//! dispatches), and a decode step repeats the same parameters and binds the same pooled
//! buffers step after step: creating a buffer or bind group per dispatch cost more host
//! time than recording the dispatch. Each cache is a hash map emptied when it reaches
//! [`CACHE_MAX`] entries; nothing in it is ever written after creation, so sharing an
//! entry between dispatches (of this step or later ones) is always safe.

use std::collections::HashMap;
use std::sync::Mutex;

use wgpu::util::DeviceExt;

use super::{Gpu, lock};

/// Upper bound on cached uniform buffers and bind groups; a full cache is emptied.
const CACHE_MAX: usize = 4096;

/// What a bind group binds: a pipeline's group 0 and each binding's whole buffer.
#[derive(Clone, PartialEq, Eq, Hash)]
struct BindKey {
    pipeline: wgpu::ComputePipeline,
    buffers: Vec<(u32, wgpu::Buffer)>,
}

#[derive(Default)]
pub(super) struct Caches {
    /// Uniform buffers by their contents.
    uniforms: Mutex<HashMap<Vec<u8>, wgpu::Buffer>>,
    /// The bind group layout of each pipeline (auto layouts, group 0).
    layouts: Mutex<HashMap<wgpu::ComputePipeline, wgpu::BindGroupLayout>>,
    /// Bind groups by pipeline and bound buffers (not used with `poison`). An entry keeps
    /// its buffers alive, so a buffer leaving the pool for good takes its entries along
    /// ([`Caches::forget`]): the cache never holds memory that nothing else holds.
    bind_groups: Mutex<HashMap<BindKey, wgpu::BindGroup>>,
}

impl Caches {
    /// Drops every bind group that binds `buffer`.
    pub fn forget(&self, buffer: &wgpu::Buffer) {
        lock(&self.bind_groups).retain(|k, _| !k.buffers.iter().any(|(_, b)| b == buffer));
    }
}

impl Gpu {
    /// A uniform buffer holding one parameter struct: made once per distinct content and
    /// reused.
    pub fn uniform<P: bytemuck::Pod>(&self, p: &P) -> wgpu::Buffer {
        let bytes = bytemuck::bytes_of(p);
        let mut cache = lock(&self.caches.uniforms);
        if let Some(b) = cache.get(bytes) {
            return b.clone();
        }
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        let b = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("params"),
                contents: bytes,
                usage: wgpu::BufferUsages::UNIFORM,
            });
        cache.insert(bytes.to_vec(), b.clone());
        b
    }

    /// Group 0's layout of `pipeline`, fetched from wgpu once.
    fn layout(&self, pipeline: &wgpu::ComputePipeline) -> wgpu::BindGroupLayout {
        lock(&self.caches.layouts)
            .entry(pipeline.clone())
            .or_insert_with(|| pipeline.get_bind_group_layout(0))
            .clone()
    }

    /// The bind group of `pipeline` with `buffers`, made once and reused while its
    /// buffers live.
    pub(super) fn bind_group(
        &self,
        label: &str,
        pipeline: &wgpu::ComputePipeline,
        buffers: &[(u32, &wgpu::Buffer)],
    ) -> wgpu::BindGroup {
        let make = || {
            let entries: Vec<wgpu::BindGroupEntry<'_>> = buffers
                .iter()
                .map(|&(binding, b)| wgpu::BindGroupEntry {
                    binding,
                    resource: b.as_entire_binding(),
                })
                .collect();
            self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(label),
                layout: &self.layout(pipeline),
                entries: &entries,
            })
        };
        if self.poison {
            return make();
        }
        let key = BindKey {
            pipeline: pipeline.clone(),
            buffers: buffers.iter().map(|&(i, b)| (i, b.clone())).collect(),
        };
        let mut cache = lock(&self.caches.bind_groups);
        if let Some(g) = cache.get(&key) {
            return g.clone();
        }
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        let g = make();
        cache.insert(key, g.clone());
        g
    }
}
