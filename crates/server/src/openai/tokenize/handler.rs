//! `/tokenize` and `/detokenize`: straight calls into the tokenizer the engine uses. A text
//! as large as the body limit allows takes a while to tokenize, so the work runs on the
//! blocking pool, never on a thread that streams other requests' tokens.

use axum::Json;
use axum::extract::State;

use super::protocol::{DetokenizeRequest, DetokenizeResponse, TokenizeRequest, TokenizeResponse};
use crate::errors::{ApiError, JsonBody};
use crate::state::AppState;

pub async fn tokenize(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<TokenizeRequest>,
) -> Result<Json<TokenizeResponse>, ApiError> {
    state.check_model(req.model.as_deref())?;
    blocking(move || req.run(state.tokenizer(), state.max_model_len())).await
}

pub async fn detokenize(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<DetokenizeRequest>,
) -> Result<Json<DetokenizeResponse>, ApiError> {
    state.check_model(req.model.as_deref())?;
    blocking(move || req.run(state.tokenizer())).await
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<Json<T>, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("tokenizing failed: {e}")))?
        .map(Json)
}
