//! Weight files: GGUF (`gguf`, with `dequant` for its block formats) and safetensors
//! (`safetensors`), both memory-mapped, and generated weights for benchmarks (`dummy`). All
//! expose the same [`WeightSource`] view, so the model code that names tensors never cares
//! which format it reads.
//!
//! Every failure is a [`LoadError`] naming the file and, where one is involved, the tensor.

use std::path::{Path, PathBuf};

use ingot_tensor::DType;

pub mod dequant;
pub mod dummy;
pub mod ggml_type;
pub mod gguf;
pub mod safetensors;

pub use dequant::{DequantError, dequantize};
pub use dummy::DummyWeights;
pub use ggml_type::GgmlType;
pub use gguf::{GgufFile, GgufTensorInfo, MetaValue};
pub use safetensors::SafetensorsDir;

/// A set of named tensors backed by one or more files.
pub trait WeightSource {
    /// The file (or directory) the weights come from, for error messages.
    fn path(&self) -> &Path;
    /// Names of every tensor, in file order.
    fn tensor_names(&self) -> Vec<String>;
    fn contains(&self, name: &str) -> bool;
    /// Row-major shape, outermost dimension first (GGUF's `ne` order reversed).
    fn shape(&self, name: &str) -> Result<Vec<usize>, LoadError>;
    /// The tensor's elements as f32, dequantized or converted as needed.
    fn load_f32(&self, name: &str) -> Result<Vec<f32>, LoadError>;
    /// The tensor's GGUF blocks as stored (row-major, whole blocks per row) when its file
    /// type is one of the block formats a tensor can keep ([`DType::BLOCK_TYPES`]); `None`
    /// for plain float types and for formats that exist only as files.
    fn blocks(&self, name: &str) -> Result<Option<(DType, &[u8])>, LoadError> {
        let _ = name;
        Ok(None)
    }

    /// The file holding tensor `name` (differs from `path` for sharded checkpoints).
    fn file_of(&self, _name: &str) -> &Path {
        self.path()
    }
}

/// How weight matrices are stored on the device. Vectors (norms, biases) are always f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeightFormat {
    /// The dtype of a dense matrix: every matrix when blocks are not kept, and those whose
    /// blocks the backend cannot use.
    pub dense: DType,
    /// Keep GGUF block formats as blocks (`Backend::from_blocks`) wherever the backend
    /// supports every verb the matrix serves (matmul; embedding for the token table).
    pub keep_blocks: bool,
}

impl WeightFormat {
    /// Every matrix as a dense copy in `dtype`.
    pub fn dense(dtype: DType) -> Self {
        Self {
            dense: dtype,
            keep_blocks: false,
        }
    }
}

/// What went wrong while reading a model file. Always names the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not what it claims to be: bad magic, truncated, inconsistent header.
    #[error("{path}: {message}")]
    Malformed { path: PathBuf, message: String },
    /// A problem with one tensor: unknown dtype, data out of bounds, wrong shape.
    #[error("{path}: tensor '{tensor}': {message}")]
    Tensor {
        path: PathBuf,
        tensor: String,
        message: String,
    },
    #[error("{path}: no tensor named '{tensor}'")]
    MissingTensor { path: PathBuf, tensor: String },
}
