//! The HTTP side of the benchmark: a plain-HTTP/1.1 client (hyper-util's pooled client, the
//! same hyper the server is built on, so no second HTTP stack is compiled) with JSON calls for
//! the setup requests and one streaming call that times a generation request chunk by chunk.
//!
//! Timing: the clock starts just before the request is handed to the client and every
//! network read is stamped when it arrives; all SSE events in one read share that stamp.
//! Connections are kept alive and reused (one per request in flight), with TCP_NODELAY so
//! small chunks are not held back by Nagle's algorithm.

use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::sse::SseDecoder;
use crate::stats::{Outcome, RequestResult, TokenSource, gaps};

/// Which OpenAI endpoint a run drives.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `/v1/completions` with a text prompt.
    Completions,
    /// `/v1/chat/completions` with one user message.
    Chat,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Completions => "/v1/completions",
            Endpoint::Chat => "/v1/chat/completions",
        }
    }
}

/// A client for one server: base URL `http://host:port[/prefix]` and an optional API key.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    api_key: Option<String>,
}

/// A JSON answer: its status and body (`Value::Null` when the body was not JSON).
pub struct JsonReply {
    pub status: StatusCode,
    pub body: Value,
    pub text: String,
}

impl HttpClient {
    /// `url` is the server's base URL; a trailing `/` or `/v1` is dropped.
    pub fn new(url: &str, api_key: Option<String>) -> Result<Self> {
        let trimmed = url.trim_end_matches('/');
        let base = trimmed.strip_suffix("/v1").unwrap_or(trimmed).to_string();
        if !base.starts_with("http://") {
            bail!("--url {url}: only plain http:// URLs are supported");
        }
        base.parse::<hyper::Uri>()
            .with_context(|| format!("--url {url} is not a valid URL"))?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self {
            client,
            base,
            api_key,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Request<Full<Bytes>>> {
        let mut b = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(header::ACCEPT, "application/json, text/event-stream");
        if let Some(key) = &self.api_key {
            b = b.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let body = match body {
            Some(v) => {
                b = b.header(header::CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(serde_json::to_vec(v)?))
            }
            None => Full::new(Bytes::new()),
        };
        Ok(b.body(body)?)
    }

    /// GET or POST `path` and read the whole answer.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<JsonReply> {
        let req = self.request(method.clone(), path, body)?;
        let resp = self
            .client
            .request(req)
            .await
            .with_context(|| format!("{method} {}{path}", self.base))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .with_context(|| format!("reading the answer to {method} {path}"))?
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(JsonReply { status, body, text })
    }

    /// Sends one streaming generation request and times it. Never fails: errors become the
    /// result's outcome. `max_tokens` is what the request asked for (used when the server
    /// gives no usage but says it stopped at the length limit); `prompt_tokens` is the
    /// prompt's built length (used when the server gives no usage).
    pub async fn stream(
        &self,
        endpoint: Endpoint,
        body: &Value,
        prompt_tokens: usize,
        max_tokens: usize,
        run_start: Instant,
    ) -> RequestResult {
        let start = Instant::now();
        let mut r = RequestResult {
            prompt_tokens,
            start_s: start.duration_since(run_start).as_secs_f64(),
            ..RequestResult::default()
        };
        let mut stream = StreamState::default();
        if let Err(e) = self.stream_inner(endpoint, body, start, &mut stream).await {
            r.outcome = Outcome::Error(format!("{e:#}"));
        }
        r.e2e_s = start.elapsed().as_secs_f64();
        r.ttft_s = stream.chunk_times.first().copied();
        r.itl_s = gaps(&stream.chunk_times);
        r.finish_reason = stream.finish_reason;
        r.cached_tokens = stream.cached_tokens;
        if let Some(p) = stream.usage_prompt {
            r.prompt_tokens = p;
        }
        (r.output_tokens, r.output_tokens_source) = match stream.usage_completion {
            Some(n) => (n, TokenSource::Usage),
            None if r.finish_reason.as_deref() == Some("length") => {
                (max_tokens, TokenSource::Length)
            }
            None => (stream.chunk_times.len(), TokenSource::Chunks),
        };
        r
    }

    async fn stream_inner(
        &self,
        endpoint: Endpoint,
        body: &Value,
        start: Instant,
        st: &mut StreamState,
    ) -> Result<()> {
        let req = self.request(Method::POST, endpoint.path(), Some(body))?;
        let resp = self
            .client
            .request(req)
            .await
            .context("sending the request")?;
        let status = resp.status();
        let mut body = resp.into_body();
        if status != StatusCode::OK {
            let bytes = body
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            bail!(
                "HTTP {status}: {}",
                text.chars().take(300).collect::<String>()
            );
        }
        let mut decoder = SseDecoder::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.context("reading the event stream")?;
            let now = start.elapsed().as_secs_f64();
            let Ok(data) = frame.into_data() else {
                continue;
            };
            for event in decoder.push(&data) {
                if event.trim() == "[DONE]" {
                    return Ok(());
                }
                st.event(endpoint, &event, now)?;
            }
        }
        if st.chunk_times.is_empty() && st.usage_completion.is_none() {
            bail!("the stream ended without any chunk");
        }
        Ok(())
    }
}

/// What a stream has told so far.
#[derive(Default)]
struct StreamState {
    /// Arrival of each text-carrying chunk, from the request's start, in seconds. // [chunks]
    chunk_times: Vec<f64>,
    finish_reason: Option<String>,
    usage_prompt: Option<usize>,
    usage_completion: Option<usize>,
    cached_tokens: Option<usize>,
}

impl StreamState {
    fn event(&mut self, endpoint: Endpoint, data: &str, now: f64) -> Result<()> {
        let v: Value = serde_json::from_str(data).map_err(|e| {
            anyhow!(
                "a chunk is not JSON ({e}): {}",
                data.chars().take(200).collect::<String>()
            )
        })?;
        if let Some(err) = v.get("error") {
            bail!("the server sent an error in the stream: {err}");
        }
        if let Some(choice) = v
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|c| c.first())
        {
            let text = match endpoint {
                Endpoint::Completions => choice.get("text"),
                Endpoint::Chat => choice.get("delta").and_then(|d| d.get("content")),
            };
            if text.and_then(Value::as_str).is_some_and(|t| !t.is_empty()) {
                self.chunk_times.push(now);
            }
            if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
                self.finish_reason = Some(f.to_string());
            }
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            let n = |k: &str| u.get(k).and_then(Value::as_u64).map(|x| x as usize);
            self.usage_prompt = n("prompt_tokens").or(self.usage_prompt);
            self.usage_completion = n("completion_tokens").or(self.usage_completion);
            self.cached_tokens = u
                .get("prompt_tokens_details")
                .and_then(|d| d.get("cached_tokens"))
                .and_then(Value::as_u64)
                .map(|x| x as usize)
                .or(self.cached_tokens);
        }
        Ok(())
    }
}
