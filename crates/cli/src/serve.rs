//! `ingot serve`: load the model, start the engine thread, and serve the OpenAI-compatible
//! API (crates/server) on a tokio runtime until SIGINT/SIGTERM, then drain and exit 0. With
//! `--kv-events-endpoint`, the engine's KV cache events are published there in vLLM's format
//! (crates/kv-events), for KV-aware routers.

use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use ingot_engine::{EngineHandle, config};
use ingot_kv_events::{KvEventPublisher, PublisherConfig};
use ingot_server::ServerConfig;
use ingot_server::openai::chat::tools::ToolFormat;

use crate::backend;
use crate::setup::{self, EngineArgs};

/// The name the default model is served under when none is given.
const DEFAULT_MODEL_NAME: &str = "SmolLM2-135M-Instruct";

#[derive(Args)]
pub struct ServeArgs {
    /// The model to serve, as for --model (default: SmolLM2-135M-Instruct).
    #[arg(value_name = "MODEL", conflicts_with = "model")]
    model_path: Option<String>,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Require `Authorization: Bearer KEY` on /v1/* requests (or set INGOT_API_KEY, which
    /// keeps the key out of the process list).
    #[arg(long, env = "INGOT_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// The model name clients send (default: the model as given on the command line).
    #[arg(long)]
    served_model_name: Option<String>,
    /// Most sequences allowed to wait for the engine (each of a request's `n` choices counts);
    /// beyond it requests get 503 with Retry-After, and a single request asking for more is a 400.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    max_queue: u64,
    /// Most choices (`n`, `best_of`) one prompt may ask for (400 beyond).
    #[arg(long, default_value_t = ingot_server::limits::DEFAULT_MAX_N, value_parser = parse_positive)]
    max_n: usize,
    /// Largest request body, e.g. 32MiB (413 beyond).
    #[arg(long, default_value = "32MiB")]
    max_request_body: String,
    /// Seconds a client may take to send a request's headers, and then its body (408 or a
    /// closed connection beyond).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    read_timeout: u64,
    /// The format tool calls are parsed in: hermes, llama3_json or mistral (default: read
    /// from the chat template; hermes when it shows none).
    #[arg(long, value_parser = parse_tool_parser)]
    tool_call_parser: Option<ToolFormat>,
    /// Seconds requests in flight may take to finish after SIGINT/SIGTERM.
    #[arg(long, default_value_t = 30)]
    shutdown_timeout: u64,
    /// Publish KV cache events (blocks stored and evicted) on this ZeroMQ endpoint, as vLLM's
    /// `--kv-events-config` does: `tcp://*:5557` binds every interface, `tcp://127.0.0.1:5557`
    /// loopback only. For vllm-router's `kv_aware` policy and other KV-aware routers.
    #[arg(long, value_name = "tcp://HOST:PORT")]
    kv_events_endpoint: Option<String>,
    /// The topic (first frame) of every KV event message; subscribers filter on it.
    #[arg(long, default_value = "", requires = "kv_events_endpoint")]
    kv_events_topic: String,
    #[command(flatten)]
    engine: EngineArgs,
}

pub fn run(mut args: ServeArgs) -> Result<()> {
    if let Some(m) = args.model_path.take() {
        args.engine.model = Some(m);
    }
    let model_name = args
        .served_model_name
        .clone()
        .or_else(|| args.engine.model.clone())
        .unwrap_or_else(|| DEFAULT_MODEL_NAME.to_string());
    let max_request_body = config::parse_size(&args.max_request_body)
        .map_err(anyhow::Error::msg)
        .context("--max-request-body")? as usize;
    // Bound before the model loads, so a taken port fails at once.
    let kv_events = match &args.kv_events_endpoint {
        Some(endpoint) => Some(KvEventPublisher::start(PublisherConfig {
            endpoint: endpoint.clone(),
            topic: args.kv_events_topic.clone(),
            queue: ingot_kv_events::DEFAULT_QUEUE,
        })?),
        None => None,
    };
    let (engine, thread) = backend::with_backend!(args.engine, |be| {
        let mut core = setup::build_core(&args.engine, be)?;
        if let Some((tx, _)) = &kv_events {
            core.publish_kv_events(tx.clone());
        }
        EngineHandle::start(core, Some(args.max_queue as usize))
    });
    // The engine holds the only sender now; the publisher ends when the engine does.
    let _kv_events = kv_events.map(|(_, publisher)| publisher);
    let cfg = ServerConfig {
        model_name,
        api_key: args.api_key.clone(),
        max_request_body,
        drain_timeout: Duration::from_secs(args.shutdown_timeout),
        max_n: args.max_n,
        read_timeout: Duration::from_secs(args.read_timeout),
        tool_parser: args.tool_call_parser,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ingot-http")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let addr = format!("{}:{}", args.host, args.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let local = listener.local_addr()?;
        tracing::info!(model = %cfg.model_name, "serving on http://{local}");
        ingot_server::serve(listener, engine.clone(), cfg)
            .await
            .context("serving HTTP")
    })?;
    // Requests still running after the drain timeout are not waited for.
    runtime.shutdown_timeout(Duration::from_secs(1));
    setup::stop_engine(engine, thread, Duration::from_secs(10));
    Ok(())
}

fn parse_positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) | Err(_) => Err(format!("'{s}' is not a positive whole number")),
        Ok(v) => Ok(v),
    }
}

fn parse_tool_parser(s: &str) -> Result<ToolFormat, String> {
    ToolFormat::from_name(s).ok_or_else(|| {
        format!(
            "unknown tool-call parser '{s}' (one of {})",
            ToolFormat::NAMES.join(", ")
        )
    })
}
