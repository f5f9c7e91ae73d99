//! Ingot's OpenAI-compatible HTTP server (DESIGN.md §8): axum on tokio in front of an
//! [`EngineHandle`]. Handlers only translate between the OpenAI (and vLLM) protocol and the
//! engine's types; the engine thread does all the work. Each endpoint lives in
//! `openai/<endpoint>/{protocol,handler}.rs`; `sse` writes event streams, `errors` the
//! OpenAI error shape, `metrics` the Prometheus exposition.
//!
//! Shutdown: on SIGINT or SIGTERM the listener closes, requests in flight (streams included)
//! run to completion, and [`serve`] returns once they are done or after the drain timeout.

pub mod errors;
pub mod limits;
pub mod metrics;
pub mod openai;
pub mod router;
pub mod sse;
pub mod state;

use std::future::Future;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use ingot_engine::EngineHandle;
use tokio::net::TcpListener;

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
///
/// Connections are HTTP/1.1 through hyper directly (not `axum::serve`) for one setting
/// axum does not expose: the header read timeout, so a client that sends half its headers
/// and stalls is dropped after `cfg.read_timeout` (its body is bounded the same way, in
/// `errors::read_body`).
pub async fn serve_until(
    listener: TcpListener,
    engine: EngineHandle,
    cfg: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let state = ServerState::new(engine, &cfg);
    let app = router(state.clone());
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(cfg.read_timeout);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let io = match accepted {
                    Ok((io, _)) => io,
                    Err(e) => {
                        // Out of file descriptors and the like: wait rather than spin.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let service = TowerToHyperService::new(app.clone());
                let conn = graceful.watch(http.serve_connection(TokioIo::new(io), service));
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let s = state.engine.stats();
    tracing::info!(
        running = s.num_running,
        waiting = s.num_waiting,
        "shutting down: no new connections; letting requests in flight finish"
    );
    let timeout = cfg.drain_timeout;
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("server stopped"),
        () = tokio::time::sleep(timeout) => {
            tracing::warn!(?timeout, "requests still in flight after the drain timeout; stopping anyway");
        }
    }
    Ok(())
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
