//! The route table and the cross-cutting layers: API-key check on `/v1/*` (as vLLM does),
//! the request body limit, JSON errors for unknown routes and methods, and a panic guard
//! that turns a handler panic into a 500 JSON error instead of a dropped connection.
//! Also the small operational endpoints: `/health`, `/metrics`, `/version`, and `/get_load`
//! (requests running plus waiting, as `{"load": N}`: what vllm-router's `power_of_two`
//! policy polls from each worker; docs/DEPLOY.md).

use std::any::Any;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;

use crate::errors::ApiError;
use crate::openai::{chat, completions, models, tokenize};
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat::handler::create))
        .route("/v1/completions", post(completions::handler::create))
        .route("/v1/models", get(models::handler::list))
        .route("/v1/models/{id}", get(models::handler::retrieve))
        .route("/tokenize", post(tokenize::handler::tokenize))
        .route("/detokenize", post(tokenize::handler::detokenize))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/version", get(version))
        .route("/get_load", get(load))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            require_api_key,
        ))
        .layer(DefaultBodyLimit::max(state.max_request_body))
        .layer(CatchPanicLayer::custom(panic_response))
        .with_state(state)
}

/// 200 while the engine serves; 503 with the reason once it has stopped or its device
/// failed.
async fn health(State(state): State<AppState>) -> Response {
    match state.engine.health() {
        Ok(()) => StatusCode::OK.into_response(),
        Err(why) => ApiError::unavailable(why).into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let text = state.metrics.render(&state.engine.stats());
    let mut r = text.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// Requests this replica holds (running and waiting), for a router choosing between
/// replicas; each of a request's `n` choices counts.
async fn load(State(state): State<AppState>) -> axum::Json<serde_json::Value> {
    let s = state.engine.stats();
    axum::Json(serde_json::json!({
        "load": s.num_running + s.num_waiting,
        "num_requests_running": s.num_running,
        "num_requests_waiting": s.num_waiting,
    }))
}

async fn version() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"version": env!("CARGO_PKG_VERSION")}))
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::route_not_found(method.as_str(), uri.path())
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::method_not_allowed(method.as_str(), uri.path())
}

/// Requires `Authorization: Bearer KEY` on `/v1/*` when a key is configured.
async fn require_api_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(key) = &state.api_key
        && req.uri().path().starts_with("/v1")
    {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| same_secret(g.trim().as_bytes(), key.as_bytes())) {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(req).await
}

/// Compares without stopping at the first difference, so timing does not reveal a prefix.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn panic_response(err: Box<dyn Any + Send + 'static>) -> Response {
    let what = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = what, "a request handler panicked");
    ApiError::internal("internal server error").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_exactly() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
        assert!(!same_secret(b"", b"a"));
    }

    #[test]
    fn panics_become_json_500s() {
        let r = panic_response(Box::new("boom"));
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
    }
}
