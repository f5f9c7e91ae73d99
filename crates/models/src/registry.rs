//! The architecture registry: maps HF `architectures` names and GGUF `general.architecture`
//! values to the decoder family that runs them, and each family to its weight table and its
//! constructor. Unknown names get an error listing what is supported. Adding a family means
//! adding its rows here and its arms in the two `match`es below.

use ingot_tensor::Backend;

use crate::config::ModelConfig;
use crate::error::Result;
use crate::families::gemma3::{self, Gemma3};
use crate::families::llama::{self, Llama};
use crate::families::{moe, phi3, qwen3};
use crate::model::Model;
use crate::weights::{WeightLoader, WeightTable};

/// A decoder architecture Ingot can run. Llama covers Llama 2/3, Mistral and SmolLM; Qwen2 is
/// the same decoder with biases on the Q/K/V projections, Qwen3 with QK-norm, Phi-3 with
/// fused weights; Gemma 3 is its own decoder. The mixture-of-experts families (Mixtral,
/// Qwen2-MoE, Qwen3-MoE, OLMoE) are the Llama decoder with the MoE block as MLP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Qwen2,
    Qwen3,
    Gemma3,
    Phi3,
    Mixtral,
    Qwen2Moe,
    Qwen3Moe,
    Olmoe,
}

/// (HF `architectures` entry, architecture)
const HF_ARCHITECTURES: &[(&str, Arch)] = &[
    ("LlamaForCausalLM", Arch::Llama),
    ("MistralForCausalLM", Arch::Llama),
    ("Qwen2ForCausalLM", Arch::Qwen2),
    ("Qwen3ForCausalLM", Arch::Qwen3),
    ("Gemma3ForCausalLM", Arch::Gemma3),
    ("Phi3ForCausalLM", Arch::Phi3),
    ("MixtralForCausalLM", Arch::Mixtral),
    ("Qwen2MoeForCausalLM", Arch::Qwen2Moe),
    ("Qwen3MoeForCausalLM", Arch::Qwen3Moe),
    ("OlmoeForCausalLM", Arch::Olmoe),
];

/// (GGUF `general.architecture`, architecture)
const GGUF_ARCHITECTURES: &[(&str, Arch)] = &[
    ("llama", Arch::Llama),
    ("qwen2", Arch::Qwen2),
    ("qwen3", Arch::Qwen3),
    ("gemma3", Arch::Gemma3),
    ("phi3", Arch::Phi3),
    ("qwen2moe", Arch::Qwen2Moe),
    ("qwen3moe", Arch::Qwen3Moe),
    ("olmoe", Arch::Olmoe),
];

impl Arch {
    /// Whether the MLP is the mixture-of-experts block ([`crate::config::MoeConfig`]).
    /// GGUF files name Mixtral `llama` (with `llama.expert_count`).
    pub fn is_moe(self) -> bool {
        matches!(
            self,
            Arch::Mixtral | Arch::Qwen2Moe | Arch::Qwen3Moe | Arch::Olmoe
        )
    }

    /// Every weight a model of this architecture and config reads (see [`WeightTable`]).
    pub fn weight_table(self, c: &ModelConfig) -> WeightTable {
        match self {
            Arch::Llama | Arch::Qwen2 => llama::weight_table(c),
            Arch::Qwen3 => qwen3::weight_table(c),
            Arch::Gemma3 => gemma3::weight_table(c),
            Arch::Phi3 => phi3::weight_table(c),
            Arch::Mixtral | Arch::Qwen2Moe | Arch::Qwen3Moe | Arch::Olmoe => moe::weight_table(c),
        }
    }

    /// Builds the model from the weights of [`Self::weight_table`].
    pub fn load<B: Backend>(
        self,
        config: ModelConfig,
        w: &mut WeightLoader<'_, B>,
    ) -> Result<Box<dyn Model<B>>> {
        Ok(match self {
            Arch::Llama | Arch::Qwen2 | Arch::Qwen3 => Box::new(Llama::load(config, w)?),
            Arch::Gemma3 => Box::new(Gemma3::load(config, w)?),
            Arch::Phi3 => Box::new(phi3::load(config, w)?),
            Arch::Mixtral | Arch::Qwen2Moe | Arch::Qwen3Moe | Arch::Olmoe => {
                Box::new(moe::load(config, w)?)
            }
        })
    }
}

pub fn from_hf(name: &str) -> Option<Arch> {
    HF_ARCHITECTURES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, a)| *a)
}

pub fn from_gguf(name: &str) -> Option<Arch> {
    GGUF_ARCHITECTURES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, a)| *a)
}

/// Comma-separated supported names, for error messages.
pub fn supported_hf() -> String {
    HF_ARCHITECTURES
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn supported_gguf() -> String {
    GGUF_ARCHITECTURES
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        assert_eq!(from_hf("MistralForCausalLM"), Some(Arch::Llama));
        assert_eq!(from_gguf("qwen2"), Some(Arch::Qwen2));
        assert_eq!(from_hf("Gemma3ForCausalLM"), Some(Arch::Gemma3));
        assert_eq!(from_gguf("phi3"), Some(Arch::Phi3));
        assert_eq!(from_hf("OlmoeForCausalLM"), Some(Arch::Olmoe));
        assert_eq!(from_gguf("qwen2moe"), Some(Arch::Qwen2Moe));
        assert_eq!(from_hf("GPT2LMHeadModel"), None);
        assert!(supported_hf().contains("Qwen2ForCausalLM"));
    }
}
