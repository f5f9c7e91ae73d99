//! `models` endpoint: request/response shapes in `protocol`, the axum handler in `handler`.

pub mod handler;
pub mod protocol;
