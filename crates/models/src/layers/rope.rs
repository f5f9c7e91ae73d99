//! Rotary embeddings. The scaling variants (linear, Llama 3, GGUF's precomputed
//! `rope_freqs` factors) all reduce to one vector `inv_freq [R/2]` computed once at load;
//! backends only ever see that vector, so the scaling logic has exactly one home.
//! [`Rope`] is that vector on the device with its pairing style; layers with the same
//! [`RopeConfig`] share one (Gemma 3's sliding and global layers hold two different ones).

use std::sync::Arc;

use ingot_tensor::{Backend, DType, RopeStyle, Shape, Tensor};

use crate::error::Result;

#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    None,
    /// Positions divided by `factor` (all frequencies scaled down).
    Linear {
        factor: f64,
    },
    /// Llama 3.1: low frequencies scaled by `factor`, high ones kept, a smooth ramp between.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position: f64,
    },
    /// Per-frequency divisors stored in the file (GGUF `rope_freqs.weight`, [R/2]).
    Factors(Vec<f32>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct RopeConfig {
    pub theta: f64,
    /// Rotated dimensions per head (R <= head_dim).
    pub rotary_dim: usize,
    pub scaling: RopeScaling,
    pub style: RopeStyle,
}

impl RopeConfig {
    /// `inv_freq[i] = theta^(-2i/R)`, then scaled. Computed in f64, stored as f32.
    pub fn inv_freq(&self) -> Vec<f32> {
        let half = self.rotary_dim / 2;
        (0..half)
            .map(|i| {
                let base = 1.0 / self.theta.powf((2 * i) as f64 / self.rotary_dim as f64);
                self.scale(i, base) as f32
            })
            .collect()
    }

    fn scale(&self, i: usize, f: f64) -> f64 {
        match &self.scaling {
            RopeScaling::None => f,
            RopeScaling::Linear { factor } => f / factor,
            RopeScaling::Factors(v) => f / v[i] as f64,
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position,
            } => {
                let wavelen = 2.0 * std::f64::consts::PI / f;
                let low_wavelen = original_max_position / low_freq_factor;
                let high_wavelen = original_max_position / high_freq_factor;
                if wavelen < high_wavelen {
                    f
                } else if wavelen > low_wavelen {
                    f / factor
                } else {
                    let smooth = (original_max_position / wavelen - low_freq_factor)
                        / (high_freq_factor - low_freq_factor);
                    (1.0 - smooth) * f / factor + smooth * f
                }
            }
        }
    }
}

/// Rotary embedding on the device: the frequencies of one [`RopeConfig`] and its style.
pub struct Rope<B: Backend> {
    pub inv_freq: Arc<Tensor<B>>, // [R/2]
    pub style: RopeStyle,
}

impl<B: Backend> Clone for Rope<B> {
    fn clone(&self) -> Self {
        Self {
            inv_freq: Arc::clone(&self.inv_freq),
            style: self.style,
        }
    }
}

impl<B: Backend> Rope<B> {
    pub fn new(b: &B, config: &RopeConfig) -> Result<Self> {
        let inv = config.inv_freq();
        Ok(Self {
            inv_freq: Arc::new(b.from_f32(&inv, Shape::new([inv.len()]), DType::F32)?),
            style: config.style,
        })
    }

    /// Rotates `q` [T, Hq, D] and `k` [T, Hk, D] in place by `positions` [T].
    pub fn apply(
        &self,
        b: &B,
        q: &mut Tensor<B>,
        k: &mut Tensor<B>,
        positions: &Tensor<B>,
    ) -> Result<()> {
        Ok(b.rope(q, k, positions, &self.inv_freq, self.style)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(scaling: RopeScaling) -> RopeConfig {
        RopeConfig {
            theta: 10000.0,
            rotary_dim: 8,
            scaling,
            style: RopeStyle::Neox,
        }
    }

    #[test]
    fn plain_and_linear() {
        let f = cfg(RopeScaling::None).inv_freq();
        assert_eq!(f.len(), 4);
        assert!((f[0] - 1.0).abs() < 1e-7);
        assert!((f[1] - 0.1).abs() < 1e-7);
        let l = cfg(RopeScaling::Linear { factor: 2.0 }).inv_freq();
        assert!((l[1] - 0.05).abs() < 1e-7);
    }

    #[test]
    fn llama3_keeps_high_and_scales_low_frequencies() {
        let s = RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position: 64.0,
        };
        let plain = cfg(RopeScaling::None).inv_freq();
        let l3 = cfg(s).inv_freq();
        // wavelen 2π < 16: kept. wavelen 2π·1000 > 64: divided by 8.
        assert_eq!(l3[0], plain[0]);
        assert!((l3[3] - plain[3] / 8.0).abs() < 1e-9);
    }
}
