//! Errors in OpenAI's JSON shape, `{"error": {"message", "type", "param", "code"}}`, with the
//! HTTP status a client expects, and the JSON body extractor that turns every way a body can
//! be wrong (too large, not JSON, wrong types) into such an error instead of axum's plain-text
//! rejections.
//!
//! Every failure a handler can meet becomes an [`ApiError`]: the status decides the class
//! (400 invalid request, 401 key, 404 model or route, 413 body size, 503 overloaded, 500
//! engine failure) and the message says what to change, with numbers where there are any.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ingot_engine::SubmitError;
use ingot_engine::api::{AddError, SamplingParamsError};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::state::AppState;

/// One error response.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's `type`: `invalid_request_error`, `server_error`, ...
    pub kind: &'static str,
    /// The request field at fault, if one is.
    pub param: Option<String>,
    pub code: Option<&'static str>,
    /// Seconds for a `Retry-After` header (503 only).
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            retry_after: None,
        }
    }

    /// 400: the request is malformed or asks for something impossible.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// 400 about one field.
    pub fn invalid_param(param: &str, message: impl Into<String>) -> Self {
        Self {
            param: Some(param.to_string()),
            ..Self::bad_request(message)
        }
    }

    /// 400 for a feature the request may ask for but this server does not do yet.
    pub fn unsupported(param: &str, message: impl Into<String>) -> Self {
        Self {
            code: Some("unsupported"),
            ..Self::invalid_param(param, message)
        }
    }

    pub fn unauthorized() -> Self {
        Self {
            code: Some("invalid_api_key"),
            ..Self::new(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                "missing or incorrect API key; send it as 'Authorization: Bearer KEY'",
            )
        }
    }

    pub fn model_not_found(model: &str, served: &str) -> Self {
        Self {
            param: Some("model".into()),
            code: Some("model_not_found"),
            ..Self::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                format!("the model '{model}' does not exist; this server serves '{served}'"),
            )
        }
    }

    pub fn route_not_found(method: &str, path: &str) -> Self {
        Self {
            code: Some("not_found"),
            ..Self::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                format!("no route for {method} {path}"),
            )
        }
    }

    pub fn method_not_allowed(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            format!("{path} does not accept {method}"),
        )
    }

    pub fn body_too_large(limit: usize) -> Self {
        Self {
            code: Some("request_too_large"),
            ..Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                format!("the request body exceeds the limit of {limit} bytes"),
            )
        }
    }

    /// 503: try again later.
    pub fn overloaded(message: impl Into<String>, retry_after: u64) -> Self {
        Self {
            code: Some("overloaded"),
            retry_after: Some(retry_after),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message)
        }
    }

    /// 503 that retrying will not fix: the engine stopped or its device failed.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            code: Some("engine_unavailable"),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message)
        }
    }

    /// 408: the client did not send its whole request in time.
    pub fn request_timeout(secs: u64) -> Self {
        Self {
            code: Some("request_timeout"),
            ..Self::new(
                StatusCode::REQUEST_TIMEOUT,
                "invalid_request_error",
                format!("the request body did not arrive within {secs} s"),
            )
        }
    }

    /// 500: the engine failed the request.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// The JSON body.
    pub fn to_json(&self) -> serde_json::Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.to_json())).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<SamplingParamsError> for ApiError {
    fn from(e: SamplingParamsError) -> Self {
        ApiError::invalid_param(e.param, e.to_string())
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::InvalidParams(p) => p.into(),
            SubmitError::Rejected(AddError::TooLong {
                prompt,
                max_tokens,
                max_model_len,
            }) => too_long(prompt, max_tokens, max_model_len),
            SubmitError::Rejected(r @ AddError::CannotFit { .. }) => {
                ApiError::invalid_param("max_tokens", r.to_string())
            }
            SubmitError::Rejected(r @ AddError::EmptyPrompt) => {
                ApiError::invalid_param("prompt", r.to_string())
            }
            SubmitError::Rejected(r @ AddError::Duplicate(_)) => ApiError::internal(r.to_string()),
            SubmitError::QueueFull(n) => ApiError::overloaded(
                format!("the server is overloaded: {n} sequences are already waiting; retry later"),
                1,
            ),
            SubmitError::EngineStopped => {
                ApiError::unavailable("the engine has stopped; the server cannot serve requests")
            }
            SubmitError::DeviceFailed(why) => ApiError::unavailable(why),
            SubmitError::InvalidGrammar(why) => ApiError::bad_request(why),
        }
    }
}

/// 400 for a prompt plus output budget beyond the model length, with the numbers.
pub fn too_long(prompt: usize, max_tokens: usize, max_model_len: usize) -> ApiError {
    ApiError::invalid_param(
        "max_tokens",
        format!(
            "this model's maximum context length is {max_model_len} tokens, but {} were requested \
             ({prompt} in the prompt, {max_tokens} for the completion); shorten the prompt or \
             lower max_tokens",
            prompt.saturating_add(max_tokens)
        ),
    )
}

/// A JSON request body. Unlike `axum::Json` it does not insist on a `Content-Type`, and every
/// rejection is an OpenAI-shaped [`ApiError`] naming the field at fault.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        parse_json(&read_body(req, state).await?).map(JsonBody)
    }
}

/// The whole body, within the size limit and the read timeout (a client that sends half a
/// body and stalls gets a 408 instead of holding its connection open for ever).
pub async fn read_body(req: Request, state: &AppState) -> Result<Bytes, ApiError> {
    let read = tokio::time::timeout(state.read_timeout, Bytes::from_request(req, state));
    let Ok(body) = read.await else {
        return Err(ApiError::request_timeout(state.read_timeout.as_secs()));
    };
    body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::body_too_large(state.max_request_body)
        } else {
            ApiError::bad_request(format!(
                "could not read the request body: {}",
                r.body_text()
            ))
        }
    })
}

/// Parses a body, telling bad JSON syntax apart from well-formed JSON of the wrong shape.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let syntax = |e: serde_json::Error| {
        ApiError::bad_request(format!("the request body is not valid JSON: {e}"))
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if !inner.is_data() {
            return syntax(inner);
        }
        let param = (path != ".").then_some(path);
        let at = param
            .as_deref()
            .map(|p| format!(" (at '{p}')"))
            .unwrap_or_default();
        ApiError {
            param,
            ..ApiError::bad_request(format!("invalid request{at}: {inner}"))
        }
    })?;
    de.end().map_err(syntax)?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    struct Body {
        #[allow(dead_code)]
        temperature: Option<f32>,
    }

    #[test]
    fn json_errors_say_what_is_wrong() {
        let e = parse_json::<Body>(b"{\"temperature\": ").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("not valid JSON"), "{}", e.message);
        assert_eq!(e.param, None);

        let e = parse_json::<Body>(b"{\"temperature\": \"hot\"}").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.param.as_deref(), Some("temperature"));
        assert!(e.message.contains("invalid type"), "{}", e.message);

        let e = parse_json::<Body>(b"{} trailing").unwrap_err();
        assert!(e.message.contains("not valid JSON"), "{}", e.message);
        assert!(parse_json::<Body>(b" {\"temperature\": 0.5} ").is_ok());
    }

    #[test]
    fn submit_errors_map_to_statuses() {
        let e: ApiError = SubmitError::QueueFull(7).into();
        assert_eq!(
            (e.status, e.retry_after),
            (StatusCode::SERVICE_UNAVAILABLE, Some(1))
        );
        let r = e.into_response();
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");

        let e: ApiError = SubmitError::Rejected(AddError::TooLong {
            prompt: 10,
            max_tokens: 20,
            max_model_len: 16,
        })
        .into();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        for n in ["16", "30", "10", "20"] {
            assert!(e.message.contains(n), "{} lacks {n}", e.message);
        }
        let body = e.to_json();
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["param"], "max_tokens");
        assert!(body["error"]["code"].is_null());

        let e: ApiError = SubmitError::InvalidParams(SamplingParamsError {
            param: "top_p",
            message: "must be in (0, 1], got 2".into(),
        })
        .into();
        assert_eq!(
            (e.status, e.param.as_deref()),
            (StatusCode::BAD_REQUEST, Some("top_p"))
        );
    }
}
