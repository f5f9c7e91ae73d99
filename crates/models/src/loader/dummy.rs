//! Random weights for a model known only by its config (vLLM's `--load-format dummy`): for
//! benchmarking shapes whose weights are not on this machine, such as Qwen2-0.5B on a lent
//! GPU. Every tensor of the family's weight table ([`crate::registry::Arch::weight_table`])
//! exists under its Hugging Face name, filled deterministically from that name (same name,
//! same values, on every run and machine).
//!
//! Values keep a forward pass in a sane numeric range, so timings are not flattered by
//! denormals or NaNs: norm weights are 1 (as the model sees them: 0 for Gemma's stored
//! `w` of `1 + w`), matrices uniform in ±sqrt(3 / fan_in) (unit-variance
//! outputs for unit-variance inputs), biases and embeddings uniform in ±0.02 and ±1.
//! Generation is a SplitMix64 stream per tensor: ~1 ns per element, about a second for the
//! 494 M parameters of Qwen2-0.5B.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{LoadError, WeightSource};
use crate::config::ModelConfig;

/// Every weight of a config, generated on demand.
pub struct DummyWeights {
    /// The config file the shapes come from (for messages).
    path: PathBuf,
    shapes: HashMap<String, Vec<usize>>,
    /// Offsets the loader adds (`WeightSpec::hf_offset`), subtracted from norm weights here.
    offsets: HashMap<String, f32>,
    /// Names in load order.
    order: Vec<String>,
}

impl DummyWeights {
    pub fn new(config: &ModelConfig, config_path: &Path) -> Self {
        let table = config.arch.weight_table(config);
        Self {
            path: config_path.to_path_buf(),
            order: table.specs.iter().map(|s| s.hf.clone()).collect(),
            shapes: table
                .specs
                .iter()
                .map(|s| (s.hf.clone(), s.shape.clone()))
                .collect(),
            offsets: table
                .specs
                .iter()
                .map(|s| (s.hf.clone(), s.hf_offset))
                .collect(),
        }
    }
}

/// FNV-1a of a name: the seed of its tensor.
fn seed_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `n` values uniform in [-bound, bound) from a SplitMix64 stream.
fn uniform(n: usize, seed: u64, bound: f32) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let unit = (z >> 40) as f32 / (1u64 << 24) as f32; // [0, 1)
            (2.0 * unit - 1.0) * bound
        })
        .collect()
}

impl WeightSource for DummyWeights {
    fn path(&self) -> &Path {
        &self.path
    }

    fn tensor_names(&self) -> Vec<String> {
        self.order.clone()
    }

    fn contains(&self, name: &str) -> bool {
        self.shapes.contains_key(name)
    }

    fn shape(&self, name: &str) -> Result<Vec<usize>, LoadError> {
        self.shapes
            .get(name)
            .cloned()
            .ok_or_else(|| LoadError::MissingTensor {
                path: self.path.clone(),
                tensor: name.to_string(),
            })
    }

    fn load_f32(&self, name: &str) -> Result<Vec<f32>, LoadError> {
        let shape = self.shape(name)?;
        let n: usize = shape.iter().product();
        Ok(if name.ends_with("norm.weight") {
            vec![1.0 - self.offsets.get(name).copied().unwrap_or(0.0); n]
        } else if name.ends_with(".bias") {
            uniform(n, seed_of(name), 0.02)
        } else if name == "model.embed_tokens.weight" {
            uniform(n, seed_of(name), 1.0)
        } else {
            // fan-in: the last extent (a matrix [N, K], an expert stack [E, N, K]).
            let fan_in = shape.last().copied().unwrap_or(1).max(1);
            uniform(n, seed_of(name), (3.0 / fan_in as f32).sqrt())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_deterministic_bounded_and_varied() {
        let a = uniform(10_000, seed_of("x"), 0.5);
        assert_eq!(a, uniform(10_000, seed_of("x"), 0.5));
        assert_ne!(a, uniform(10_000, seed_of("y"), 0.5));
        assert!(a.iter().all(|v| (-0.5..0.5).contains(v)));
        let mean = a.iter().sum::<f32>() / a.len() as f32;
        let var = a.iter().map(|v| v * v).sum::<f32>() / a.len() as f32;
        assert!(mean.abs() < 0.02, "mean {mean}");
        // Uniform in ±b has variance b²/3.
        assert!((var - 0.25 / 3.0).abs() < 0.005, "variance {var}");
    }
}
