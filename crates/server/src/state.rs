//! What every handler shares: the engine handle, the served model's name and limits, the
//! API key and the metrics. Immutable after start-up except the metrics (which lock
//! internally), so it is one `Arc` cloned into each request.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ingot_engine::EngineHandle;
use ingot_tokenizer::Tokenizer;

use crate::errors::ApiError;
use crate::limits::RequestLimits;
use crate::metrics::Metrics;
use crate::openai::chat::tools::ToolFormat;

/// Settings of the HTTP layer (the engine has its own).
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The name clients use in `model` (`--served-model-name`).
    pub model_name: String,
    /// Required as `Authorization: Bearer KEY` on `/v1/*` when set.
    pub api_key: Option<String>,
    /// Largest request body accepted, in bytes (413 beyond).
    pub max_request_body: usize,
    /// How long in-flight requests may run after SIGINT/SIGTERM before the server exits anyway.
    pub drain_timeout: Duration,
    /// Most choices (`n`) one prompt may ask for (`--max-n`).
    pub max_n: usize,
    /// The longest a client may take to send a request's headers, or its body (408 beyond).
    pub read_timeout: Duration,
    /// The tool-call format (`--tool-call-parser`); None reads it from the chat template.
    pub tool_parser: Option<ToolFormat>,
}

pub struct ServerState {
    pub engine: EngineHandle,
    pub model_name: String,
    pub api_key: Option<String>,
    pub max_request_body: usize,
    pub read_timeout: Duration,
    pub limits: RequestLimits,
    pub metrics: Metrics,
    /// Unix seconds at start-up (the `created` of `/v1/models`).
    pub started: u64,
    /// See [`ServerConfig::tool_parser`].
    pub tool_parser: Option<ToolFormat>,
}

pub type AppState = Arc<ServerState>;

impl ServerState {
    pub fn new(engine: EngineHandle, cfg: &ServerConfig) -> AppState {
        let metrics = Metrics::new(&cfg.model_name, engine.config().max_model_len);
        let limits = RequestLimits::new(
            cfg.max_n,
            engine.max_waiting(),
            engine.tokenizer(),
            context_len(&engine),
        );
        Arc::new(ServerState {
            tool_parser: cfg.tool_parser,
            read_timeout: cfg.read_timeout,
            limits,
            engine,
            model_name: cfg.model_name.clone(),
            api_key: cfg.api_key.clone(),
            max_request_body: cfg.max_request_body,
            metrics,
            started: unix_now(),
        })
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        self.engine.tokenizer()
    }

    /// The longest prompt + output a request may ask for: the model length, or less when
    /// the whole KV cache holds fewer tokens (a longer request could never run).
    pub fn max_model_len(&self) -> usize {
        context_len(&self.engine)
    }

    /// A request naming another model gets 404; naming none is fine (as in vLLM).
    pub fn check_model(&self, model: Option<&str>) -> Result<(), ApiError> {
        match model {
            Some(m) if m != self.model_name => Err(ApiError::model_not_found(m, &self.model_name)),
            _ => Ok(()),
        }
    }
}

/// See [`ServerState::max_model_len`].
fn context_len(engine: &EngineHandle) -> usize {
    let c = engine.config();
    c.max_model_len.min(c.kv_tokens())
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A fresh response id like `chatcmpl-5f0c...` (random, 32 hex digits).
pub fn response_id(prefix: &str) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    format!("{prefix}-{:016x}{:016x}", rng.next_u64(), rng.next_u64())
}
