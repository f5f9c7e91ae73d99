//! `/tokenize` and `/detokenize`: straight calls into the tokenizer the engine uses.

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
    Ok(Json(req.run(state.tokenizer(), state.max_model_len())?))
}

pub async fn detokenize(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<DetokenizeRequest>,
) -> Result<Json<DetokenizeResponse>, ApiError> {
    state.check_model(req.model.as_deref())?;
    Ok(Json(req.run(state.tokenizer())?))
}
