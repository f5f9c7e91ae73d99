//! Token embedding and the LM head. The embedding gathers rows of the [V, H] table, times a
//! scale where the family has one (Gemma: sqrt(H), applied to the gathered rows only, so a
//! tied head still reads the table as stored); the head is its own [V, H] matrix or, when the
//! embeddings are tied, the embedding table itself (never a copy).

use ingot_tensor::{Backend, Op, Tensor};

use crate::error::Result;
use crate::weights::WeightLoader;

pub struct Embedding<B: Backend> {
    pub table: Tensor<B>, // [V, H]
    /// Multiplier of the gathered rows.
    pub scale: Option<f32>,
}

impl<B: Backend> Embedding<B> {
    /// The table `name`; `tied` when the LM head reads it too, so it must serve matmul.
    pub fn load(w: &mut WeightLoader<'_, B>, name: &str, tied: bool) -> Result<Self> {
        let uses: &[Op] = if tied {
            &[Op::Embedding, Op::Matmul]
        } else {
            &[Op::Embedding]
        };
        Ok(Self {
            table: w.tensor_for(name, uses)?,
            scale: None,
        })
    }

    /// The same embedding with its rows multiplied by `s`.
    pub fn scaled(self, s: f32) -> Self {
        Self {
            scale: Some(s),
            ..self
        }
    }

    /// `ids` [T] u32 -> [T, H].
    pub fn forward(&self, b: &B, ids: &Tensor<B>) -> Result<Tensor<B>> {
        let x = b.embedding(&self.table, ids)?;
        Ok(match self.scale {
            Some(s) => b.scale(&x, s)?,
            None => x,
        })
    }
}

/// The output projection to vocabulary logits.
pub struct LmHead<B: Backend> {
    pub weight: Option<Tensor<B>>, // [V, H]; None when tied to the embedding table
}

impl<B: Backend> LmHead<B> {
    /// `lm_head.weight` when the table lists one (untied), else tied.
    pub fn load(w: &mut WeightLoader<'_, B>) -> Result<Self> {
        Ok(Self {
            weight: w.optional("lm_head.weight")?,
        })
    }

    /// `x` [S', H] -> logits [S', V].
    pub fn forward(&self, b: &B, x: &Tensor<B>, embed: &Embedding<B>) -> Result<Tensor<B>> {
        let head = self.weight.as_ref().unwrap_or(&embed.table);
        Ok(b.matmul(x, head, None)?)
    }
}
