//! Ingot's OpenAI-compatible HTTP server (DESIGN.md §8): axum on tokio in front of an
//! [`EngineHandle`]. Handlers only translate between the OpenAI (and vLLM) protocol and the
//! engine's types; the engine thread does all the work. Each endpoint lives in
//! `openai/<endpoint>/{protocol,handler}.rs`; `sse` writes event streams, `errors` the
//! OpenAI error shape, `metrics` the Prometheus exposition.
//!
//! Shutdown: on SIGINT or SIGTERM the listener closes, requests in flight (streams included)
//! run to completion, and [`serve`] returns once they are done or after the drain timeout.

pub mod errors;
pub mod metrics;
pub mod openai;
pub mod router;
pub mod sse;
pub mod state;

use std::future::{Future, IntoFuture};
use std::sync::Arc;

use ingot_engine::EngineHandle;
use tokio::net::TcpListener;
use tokio::sync::Notify;

pub use router::router;
pub use state::{AppState, ServerConfig, ServerState};

/// Serves `engine` on `listener` until SIGINT or SIGTERM, then drains.
pub async fn serve(
    listener: TcpListener,
    engine: EngineHandle,
    cfg: ServerConfig,
) -> std::io::Result<()> {
    serve_until(listener, engine, cfg, shutdown_signal()).await
}

/// Serves until `shutdown` resolves; then stops accepting, lets in-flight requests finish
/// for at most `cfg.drain_timeout`, and returns.
pub async fn serve_until(
    listener: TcpListener,
    engine: EngineHandle,
    cfg: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let state = ServerState::new(engine, &cfg);
    let app = router(state.clone());
    let draining = Arc::new(Notify::new());
    let notify = draining.clone();
    let stats_state = state.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        let s = stats_state.engine.stats();
        tracing::info!(
            running = s.num_running,
            waiting = s.num_waiting,
            "shutting down: no new connections; letting requests in flight finish"
        );
        notify.notify_one();
    });
    let timeout = cfg.drain_timeout;
    tokio::select! {
        result = server.into_future() => {
            tracing::info!("server stopped");
            result
        }
        _ = async { draining.notified().await; tokio::time::sleep(timeout).await } => {
            tracing::warn!(?timeout, "requests still in flight after the drain timeout; stopping anyway");
            Ok(())
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
}
