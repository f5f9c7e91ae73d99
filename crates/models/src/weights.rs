//! The weight table of a model and the one place weights are uploaded.
//!
//! A family writes down every tensor it reads once, in its [`WeightTable`]: the Hugging Face
//! name, the GGUF name and the row-major shape the config implies. Loading checks each file
//! tensor against that table; the dummy loader ([`crate::loader::dummy`]) generates tensors
//! from it; the progress bar counts it. Layers never open files: they ask a [`WeightLoader`]
//! for a vector, a matrix, a stack of matrices or row ranges of one, so how a weight reaches
//! the device is decided here alone: vectors in f32; matrices as a dense copy in the weight
//! dtype or, when [`WeightFormat::keep_blocks`] asks and the backend supports the verbs the
//! matrix serves for its GGUF block type, as those blocks (`Backend::from_blocks`).

use std::collections::HashMap;

use ingot_tensor::{Backend, DType, Op, Shape, Tensor};

use crate::error::Result;
use crate::loader::{LoadError, WeightFormat, WeightSource};

/// Which of a [`WeightSpec`]'s names a weight file uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightNames {
    HuggingFace,
    Gguf,
}

/// One tensor a family reads.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightSpec {
    /// Hugging Face name, e.g. `model.layers.3.self_attn.q_proj.weight`; the key layers use.
    pub hf: String,
    /// llama.cpp's GGUF name, e.g. `blk.3.attn_q.weight`.
    pub gguf: String,
    /// Row-major shape, outermost first.
    pub shape: Vec<usize>,
    /// Added to every element read under the Hugging Face name: Gemma's RMSNorm multiplies by
    /// `1 + w` where GGUF files store the sum already (llama.cpp's converter adds the 1).
    pub hf_offset: f32,
    /// A stack of expert matrices [E, N, K] that GGUF files store as one tensor and Hugging
    /// Face checkpoints as E tensors [N, K]: their name with `{e}` for the expert index
    /// (`model.layers.0.mlp.experts.{e}.gate_proj.weight`). `hf` is then the stack's own
    /// name, which only generated (dummy) weights use.
    pub hf_experts: Option<String>,
}

/// Every weight of one model, in load order.
#[derive(Clone, Debug, Default)]
pub struct WeightTable {
    pub specs: Vec<WeightSpec>,
}

impl WeightTable {
    /// A model-level tensor; returns its entry (to set [`WeightSpec::hf_offset`]).
    pub fn global(&mut self, hf: &str, gguf: &str, shape: &[usize]) -> &mut WeightSpec {
        self.push(hf.to_string(), gguf.to_string(), shape)
    }

    /// A tensor of layer `l`: `model.layers.{l}.{hf}` / `blk.{l}.{gguf}`.
    pub fn layer(&mut self, l: usize, hf: &str, gguf: &str, shape: &[usize]) -> &mut WeightSpec {
        self.push(layer_name(l, hf), format!("blk.{l}.{gguf}"), shape)
    }

    /// A stack of layer `l`'s expert matrices, [E, N, K]: `blk.{l}.{gguf}` in GGUF files,
    /// `model.layers.{l}.{hf_expert}` with `{e}` replaced by 0..E in Hugging Face ones, and
    /// `model.layers.{l}.{hf_stack}` for generated weights.
    pub fn layer_experts(
        &mut self,
        l: usize,
        hf_stack: &str,
        hf_expert: &str,
        gguf: &str,
        shape: [usize; 3],
    ) -> &mut WeightSpec {
        let spec = self.layer(l, hf_stack, gguf, &shape);
        spec.hf_experts = Some(layer_name(l, hf_expert));
        spec
    }

    fn push(&mut self, hf: String, gguf: String, shape: &[usize]) -> &mut WeightSpec {
        self.specs.push(WeightSpec {
            hf,
            gguf,
            shape: shape.to_vec(),
            hf_offset: 0.0,
            hf_experts: None,
        });
        self.specs.last_mut().expect("just pushed")
    }

    pub fn len(&self) -> usize {
        self.specs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    pub fn contains(&self, hf: &str) -> bool {
        self.specs.iter().any(|s| s.hf == hf)
    }
}

/// Shapes equal up to extents of 1: llama.cpp stores Qwen2-MoE's shared-expert gate
/// ([1, H] in Hugging Face files) as a vector [H].
fn same_shape(a: &[usize], b: &[usize]) -> bool {
    let squeeze = |s: &[usize]| s.iter().copied().filter(|&d| d != 1).collect::<Vec<_>>();
    a == b || squeeze(a) == squeeze(b)
}

/// `model.layers.{l}.{part}`: the Hugging Face name of a layer's tensor.
pub fn layer_name(l: usize, part: &str) -> String {
    format!("model.layers.{l}.{part}")
}

/// Reads the weights of a [`WeightTable`] from a [`WeightSource`] and uploads them: vectors
/// (norms, biases) in f32, matrices as [`WeightFormat`] says. Each read checks the file's
/// shape against the table and ticks `on_tensor` (progress).
pub struct WeightLoader<'a, B: Backend> {
    backend: &'a B,
    src: &'a dyn WeightSource,
    names: WeightNames,
    specs: HashMap<String, WeightSpec>,
    format: WeightFormat,
    on_tensor: &'a mut dyn FnMut(),
    /// Bytes uploaded so far: (GGUF blocks, dense copies and vectors).
    stored: (u64, u64),
}

/// Matrices read as GGUF blocks: the block type, the bytes (rows stacked) and [n, k].
struct Blocks {
    dtype: DType,
    bytes: Vec<u8>,
    shape: [usize; 2],
}

impl<'a, B: Backend> WeightLoader<'a, B> {
    pub fn new(
        backend: &'a B,
        table: &WeightTable,
        src: &'a dyn WeightSource,
        names: WeightNames,
        format: WeightFormat,
        on_tensor: &'a mut dyn FnMut(),
    ) -> Self {
        let specs = table
            .specs
            .iter()
            .map(|s| (s.hf.clone(), s.clone()))
            .collect();
        Self {
            backend,
            src,
            names,
            specs,
            format,
            on_tensor,
            stored: (0, 0),
        }
    }

    /// Bytes of weights uploaded so far, as (GGUF blocks, dense copies and vectors): what
    /// the model takes on the device (before any backend padding).
    pub fn bytes_stored(&self) -> (u64, u64) {
        self.stored
    }

    /// A dense upload, counted.
    fn dense(&mut self, data: &[f32], shape: Shape, dtype: DType) -> Result<Tensor<B>> {
        self.stored.1 += (shape.numel() * dtype.size_in_bytes()) as u64;
        Ok(self.backend.from_f32(data, shape, dtype)?)
    }

    pub fn backend(&self) -> &'a B {
        self.backend
    }

    /// Whether the table holds `hf` (optional tensors: biases, untied heads).
    pub fn has(&self, hf: &str) -> bool {
        self.specs.contains_key(hf)
    }

    /// The table's entry for weight `hf` and the name the file uses for it, after checking
    /// the file's shape against the table's.
    fn checked(&self, hf: &str) -> Result<(&WeightSpec, &str)> {
        let spec = self
            .specs
            .get(hf)
            .unwrap_or_else(|| unreachable!("{hf} is not in the weight table"));
        let name = match self.names {
            WeightNames::HuggingFace => &spec.hf,
            WeightNames::Gguf => &spec.gguf,
        };
        let shape = self.src.shape(name)?;
        if !same_shape(&shape, &spec.shape) {
            return Err(LoadError::Tensor {
                path: self.src.file_of(name).to_path_buf(),
                tensor: name.clone(),
                message: format!(
                    "shape {shape:?} does not match the config's {:?}",
                    spec.shape
                ),
            }
            .into());
        }
        Ok((spec, name))
    }

    /// The elements of weight `hf` (a name of the table) as f32.
    fn read(&mut self, hf: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let (spec, name) = self.checked(hf)?;
        let mut data = self.src.load_f32(name)?;
        if self.names == WeightNames::HuggingFace && spec.hf_offset != 0.0 {
            data.iter_mut().for_each(|x| *x += spec.hf_offset);
        }
        let shape = spec.shape.clone();
        (self.on_tensor)();
        Ok((data, shape))
    }

    /// The matrices `hf` stacked by rows as GGUF blocks, when blocks are kept, every part
    /// is stored in the same block format and the backend supports each verb of `uses` for
    /// it; `None` otherwise (the caller makes a dense copy).
    fn blocks(&mut self, hf: &[&str], uses: &[Op]) -> Result<Option<Blocks>> {
        if !self.format.keep_blocks {
            return Ok(None);
        }
        let (mut dtype, mut bytes, mut n, mut k) = (None, Vec::new(), 0, 0);
        for name in hf {
            let (spec, file_name) = self.checked(name)?;
            let [rows, cols] = spec.shape[..] else {
                return Ok(None);
            };
            let Some((dt, part)) = self.src.blocks(file_name)? else {
                return Ok(None);
            };
            let usable = uses.iter().all(|&op| self.backend.supports(op, dt));
            if !usable || dtype.is_some_and(|d| d != dt) {
                return Ok(None);
            }
            dtype = Some(dt);
            bytes.extend_from_slice(part);
            (n, k) = (n + rows, cols);
        }
        for _ in hf {
            (self.on_tensor)();
        }
        Ok(dtype.map(|dtype| Blocks {
            dtype,
            bytes,
            shape: [n, k],
        }))
    }

    fn upload_blocks(&mut self, bytes: &[u8], shape: Shape, dtype: DType) -> Result<Tensor<B>> {
        self.stored.0 += bytes.len() as u64;
        Ok(self.backend.from_blocks(bytes, shape, dtype)?)
    }

    /// A 1-D weight (norm, bias), uploaded in f32.
    pub fn vector(&mut self, hf: &str) -> Result<Tensor<B>> {
        let (data, shape) = self.read(hf)?;
        self.dense(&data, Shape::new(shape), DType::F32)
    }

    /// A weight that only matmul reads (or a vector): see [`Self::tensor_for`].
    pub fn tensor(&mut self, hf: &str) -> Result<Tensor<B>> {
        self.tensor_for(hf, &[Op::Matmul])
    }

    /// A weight as the verbs `uses` will read it: a vector in f32; a matrix as its GGUF
    /// blocks where [`Self::blocks`] allows, else a dense copy in the weight dtype.
    pub fn tensor_for(&mut self, hf: &str, uses: &[Op]) -> Result<Tensor<B>> {
        if let Some(b) = self.blocks(&[hf], uses)? {
            return self.upload_blocks(&b.bytes, Shape::new(b.shape), b.dtype);
        }
        let (data, shape) = self.read(hf)?;
        let dtype = if shape.len() == 1 {
            DType::F32
        } else {
            self.format.dense
        };
        self.dense(&data, Shape::new(shape), dtype)
    }

    /// A matrix as a dense f32 copy whatever the format asks (MoE routers: which experts a
    /// token takes is decided by the order of its router logits, so they keep the file's
    /// precision, as llama.cpp keeps `ffn_gate_inp` in F32).
    pub fn f32_matrix(&mut self, hf: &str) -> Result<Tensor<B>> {
        let (data, shape) = self.read(hf)?;
        Ok(self
            .backend
            .from_f32(&data, Shape::new(shape), DType::F32)?)
    }

    /// [`Self::tensor`] when the table holds `hf`, else `None`.
    pub fn optional(&mut self, hf: &str) -> Result<Option<Tensor<B>>> {
        if self.has(hf) {
            self.tensor(hf).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Rows of several [n_i, k] matrices stacked into one [sum n_i, k] tensor (gate/up),
    /// read by matmul.
    pub fn stacked(&mut self, hf: &[&str]) -> Result<Tensor<B>> {
        if let Some(b) = self.blocks(hf, &[Op::Matmul])? {
            return self.upload_blocks(&b.bytes, Shape::new(b.shape), b.dtype);
        }
        let mut data = Vec::new();
        let (mut n, mut k) = (0, 0);
        for name in hf {
            let (part, shape) = self.read(name)?;
            data.extend(part);
            n += shape[0];
            k = shape[1];
        }
        let dtype = self.format.dense;
        self.dense(&data, Shape::new([n, k]), dtype)
    }

    /// [`Self::stacked`] when the parts would be stored alike (all dense, or all blocks of
    /// one format the backend keeps), else `None`: the caller keeps them apart, so a file
    /// whose parts differ (Q4_K_M: `attn_v` in Q6_K beside Q4_K) is neither densified nor
    /// requantized (QKV).
    pub fn stacked_if_alike(&mut self, hf: &[&str]) -> Result<Option<Tensor<B>>> {
        if self.format.keep_blocks {
            let mut kinds = Vec::with_capacity(hf.len());
            for name in hf {
                let (_, file_name) = self.checked(name)?;
                let kept = self
                    .src
                    .blocks(file_name)?
                    .map(|(dt, _)| dt)
                    .filter(|&dt| self.backend.supports(Op::Matmul, dt));
                kinds.push(kept);
            }
            if kinds.windows(2).any(|p| p[0] != p[1]) {
                return Ok(None);
            }
        }
        self.stacked(hf).map(Some)
    }

    /// Stacks of expert matrices `hf` (each [E, N_p, K], see [`WeightTable::layer_experts`])
    /// joined expert by expert into one [E, sum N_p, K] tensor: expert e's rows of the first
    /// stack, then its rows of the second (gate, up). Kept as GGUF blocks where every part is
    /// stored in one block format the backend's `moe_experts_add` reads, else a dense copy.
    pub fn experts(&mut self, hf: &[&str]) -> Result<Tensor<B>> {
        let mut parts = Vec::with_capacity(hf.len());
        for name in hf {
            let spec = self.checked_experts(name)?;
            parts.push(spec);
        }
        let (e, k) = (parts[0].shape[0], parts[0].shape[2]);
        let rows: Vec<usize> = parts.iter().map(|s| s.shape[1]).collect();
        let n: usize = rows.iter().sum();
        if let Some((dtype, chunks)) = self.expert_blocks(&parts)? {
            let mut bytes = Vec::with_capacity(chunks.iter().map(Vec::len).sum());
            for x in 0..e {
                for (chunk, &r) in chunks.iter().zip(&rows) {
                    let per = chunk.len() / e;
                    bytes.extend_from_slice(&chunk[x * per..(x + 1) * per]);
                    debug_assert_eq!(per, dtype.storage_bytes(r * k).unwrap_or(0));
                }
            }
            for _ in hf {
                (self.on_tensor)();
            }
            return self.upload_blocks(&bytes, Shape::new([e, n, k]), dtype);
        }
        let mut data = Vec::with_capacity(e * n * k);
        let mut values = Vec::with_capacity(parts.len());
        for spec in &parts {
            values.push(self.read_experts(spec)?);
            (self.on_tensor)();
        }
        for x in 0..e {
            for (v, &r) in values.iter().zip(&rows) {
                data.extend_from_slice(&v[x * r * k..(x + 1) * r * k]);
            }
        }
        Ok(self
            .backend
            .from_f32(&data, Shape::new([e, n, k]), self.format.dense)?)
    }

    /// The table's entry for the expert stack `hf`, after checking the file's tensor(s).
    fn checked_experts(&self, hf: &str) -> Result<WeightSpec> {
        let spec = self
            .specs
            .get(hf)
            .unwrap_or_else(|| unreachable!("{hf} is not in the weight table"))
            .clone();
        let per_expert = spec.hf_experts.clone().expect("an expert stack");
        if self.names == WeightNames::Gguf || self.src.contains(&spec.hf) {
            self.checked(hf)?;
            return Ok(spec);
        }
        let want = &spec.shape[1..];
        for x in 0..spec.shape[0] {
            let name = per_expert.replace("{e}", &x.to_string());
            let shape = self.src.shape(&name)?;
            if shape != want {
                return Err(LoadError::Tensor {
                    path: self.src.file_of(&name).to_path_buf(),
                    tensor: name,
                    message: format!("shape {shape:?} does not match the config's {want:?}"),
                }
                .into());
            }
        }
        Ok(spec)
    }

    /// Each stack's bytes when all are GGUF blocks of one format the backend reads experts in.
    fn expert_blocks(&self, parts: &[WeightSpec]) -> Result<Option<(DType, Vec<Vec<u8>>)>> {
        if !self.format.keep_blocks || self.names != WeightNames::Gguf {
            return Ok(None);
        }
        let mut dtype = None;
        let mut chunks = Vec::with_capacity(parts.len());
        for spec in parts {
            let Some((dt, bytes)) = self.src.blocks(&spec.gguf)? else {
                return Ok(None);
            };
            if !self.backend.supports(Op::MoeExperts, dt) || dtype.is_some_and(|d| d != dt) {
                return Ok(None);
            }
            dtype = Some(dt);
            chunks.push(bytes.to_vec());
        }
        Ok(dtype.map(|d| (d, chunks)))
    }

    /// The elements of an expert stack as f32 [E, N, K], from one tensor or from E.
    fn read_experts(&self, spec: &WeightSpec) -> Result<Vec<f32>> {
        match self.names {
            WeightNames::Gguf => Ok(self.src.load_f32(&spec.gguf)?),
            WeightNames::HuggingFace if self.src.contains(&spec.hf) => {
                Ok(self.src.load_f32(&spec.hf)?)
            }
            WeightNames::HuggingFace => {
                let template = spec.hf_experts.as_deref().expect("an expert stack");
                let mut data = Vec::with_capacity(spec.shape.iter().product());
                for x in 0..spec.shape[0] {
                    data.extend(
                        self.src
                            .load_f32(&template.replace("{e}", &x.to_string()))?,
                    );
                }
                Ok(data)
            }
        }
    }

    /// 1-D weights concatenated into one f32 vector (the QKV biases of a stacked QKV).
    pub fn stacked_vector(&mut self, hf: &[&str]) -> Result<Tensor<B>> {
        let mut data = Vec::new();
        for name in hf {
            data.extend(self.read(name)?.0);
        }
        let n = data.len();
        self.dense(&data, Shape::new([n]), DType::F32)
    }
}
