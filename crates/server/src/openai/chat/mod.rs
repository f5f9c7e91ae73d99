//! `chat` endpoint: request/response shapes in `protocol`, the axum handler in `handler`,
//! tool calling in `tools` (requests, prompts, constraints) and `tool_scan` (reading calls
//! out of the output, finished or streamed).

pub mod handler;
pub mod protocol;
pub mod tool_scan;
pub mod tools;
