//! Request states, the waiting and running queues, and the step scheduler. Talks to the KV
//! cache manager for blocks and to the runner only through [`SchedulerOutput`].

pub mod output;
pub mod request;
pub mod scheduler;

pub use ingot_api::{AddError, MAX_LOGPROBS, SamplingParams, SamplingParamsError};
pub use ingot_kv_cache::KvGroupSpec;
pub use output::{NewRequest, ScheduledRequest, SchedulerOutput};
pub use request::{FinishReason, Request, RequestId, RequestStatus};
pub use scheduler::{Scheduler, SchedulerConfig, StepResult};
