//! The model runner: turns a step's [`SchedulerOutput`](ingot_scheduler::SchedulerOutput)
//! into one flat [`InputBatch`], runs the model's forward pass over it, and samples the next
//! tokens with each request's own sampling state.

pub mod input_batch;
pub mod model_runner;
mod sample_plan;
pub mod sampler;

pub use ingot_scheduler::SamplingParams;
pub use input_batch::{GroupInput, InputBatch, ScheduledSeq};
pub use model_runner::{MaskStats, ModelRunner};
pub use sampler::{Sampled, Sampler, TokenLogprobs};
