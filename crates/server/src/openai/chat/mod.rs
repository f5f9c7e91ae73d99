//! `chat` endpoint: request/response shapes in `protocol`, the axum handler in `handler`,
//! tool calling in `tools`.

pub mod handler;
pub mod protocol;
pub mod tools;
