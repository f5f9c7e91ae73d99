//! Server-sent events as OpenAI streams them: each chunk is one `data: {json}` line followed
//! by a blank line, and the stream ends with `data: [DONE]`. No `event:` or `id:` fields.
//!
//! The response body owns the stream of chunks, and through it the engine's request streams:
//! when the client goes away hyper drops the body, which drops the request streams, which
//! aborts the requests and frees their KV blocks.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use futures_util::stream::{self, Stream, StreamExt};

/// One SSE event carrying `data` (which must not contain a newline; JSON text never does).
pub fn event(data: &str) -> Bytes {
    debug_assert!(!data.contains('\n'));
    let mut s = String::with_capacity(data.len() + 8);
    s.push_str("data: ");
    s.push_str(data);
    s.push_str("\n\n");
    Bytes::from(s)
}

pub const DONE: &[u8] = b"data: [DONE]\n\n";

/// A `text/event-stream` response: every item of `chunks` as an event, then `[DONE]`.
pub fn response<S>(chunks: S) -> Response
where
    S: Stream<Item = String> + Send + 'static,
{
    let body = chunks
        .map(|c| event(&c))
        .chain(stream::once(async { Bytes::from_static(DONE) }))
        .map(Ok::<_, Infallible>);
    let mut response = Response::new(Body::from_stream(body));
    *response.status_mut() = StatusCode::OK;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_then_done() {
        let r = response(stream::iter(vec![
            "{\"a\":1}".to_string(),
            "{\"b\":2}".to_string(),
        ]));
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/event-stream");
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        assert_eq!(
            &bytes[..],
            b"data: {\"a\":1}\n\ndata: {\"b\":2}\n\ndata: [DONE]\n\n"
        );
    }
}
