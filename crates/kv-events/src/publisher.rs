//! The publisher: a ZeroMQ PUB socket on its own thread, fed by a bounded channel.
//!
//! The engine thread only ever `try_send`s a batch into the channel (see
//! `ingot_engine::EngineCore::publish_kv_events`), so a slow or absent subscriber never slows
//! a step: when the channel is full the engine drops the batch and counts it. This thread
//! encodes each batch (`wire`) and hands it to the PUB socket, which, as ZeroMQ's PUB does,
//! drops a message for a subscriber whose queue is full instead of waiting. The socket is
//! `zeromq` (ZeroMQ's ZMTP 3 in pure Rust, on a one-thread tokio runtime here), so libzmq
//! subscribers (pyzmq, the `zmq` crate) connect to it as to vLLM's.
//!
//! Ingot's socket always binds (subscribers connect to it). vLLM binds when its endpoint has
//! a wildcard host (`tcp://*:5557`, the default) and connects otherwise; `*` is accepted here
//! with the same meaning (every interface).

use std::net::SocketAddr;
use std::thread::JoinHandle;

use bytes::Bytes;
use ingot_kv_cache::KvEventBatch;
use tokio::sync::mpsc::{Receiver, Sender, channel};
use zeromq::{Socket, SocketSend, ZmqMessage};

use crate::wire;

/// Batches the channel holds before the engine drops new ones (each is one step's events).
pub const DEFAULT_QUEUE: usize = 4096;

#[derive(Clone, Debug)]
pub struct PublisherConfig {
    /// `tcp://HOST:PORT`; HOST `*` means every interface, PORT 0 any free port.
    pub endpoint: String,
    /// The first frame of every message; subscribers filter on its prefix ("" = all).
    pub topic: String,
    /// Capacity of the engine -> publisher channel, in batches.
    pub queue: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum PublisherError {
    #[error("KV events endpoint '{0}': expected tcp://HOST:PORT (HOST may be *)")]
    Endpoint(String),
    #[error("binding the KV events endpoint {endpoint}: {reason}")]
    Bind { endpoint: String, reason: String },
    #[error("starting the KV events publisher: {0}")]
    Start(String),
}

/// A running publisher. Dropping every sender of its channel stops it.
pub struct KvEventPublisher {
    local: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl KvEventPublisher {
    /// Binds the endpoint and starts the publisher thread. Returns the sender to give the
    /// engine, and the publisher (which knows the address really bound).
    pub fn start(cfg: PublisherConfig) -> Result<(Sender<KvEventBatch>, Self), PublisherError> {
        let addr = parse_endpoint(&cfg.endpoint)?;
        let (tx, rx) = channel(cfg.queue.max(1));
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let topic = cfg.topic.into_bytes();
        let thread = std::thread::Builder::new()
            .name("ingot-kv-events".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready_tx.send(Err(PublisherError::Start(e.to_string())));
                        return;
                    }
                };
                runtime.block_on(publish(addr, topic, rx, ready_tx));
            })
            .map_err(|e| PublisherError::Start(e.to_string()))?;
        let local = ready_rx
            .recv()
            .map_err(|_| PublisherError::Start("the publisher thread ended".into()))??;
        Ok((
            tx,
            Self {
                local,
                thread: Some(thread),
            },
        ))
    }

    /// The address the socket is bound to (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Waits for the thread to end (after every sender is dropped and the queue drained).
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `tcp://HOST:PORT` -> a socket address; `*` is every IPv4 interface, `[::]` every IPv6 one.
pub fn parse_endpoint(endpoint: &str) -> Result<SocketAddr, PublisherError> {
    let bad = || PublisherError::Endpoint(endpoint.to_string());
    let rest = endpoint.strip_prefix("tcp://").ok_or_else(bad)?;
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = match host {
        "*" => "0.0.0.0",
        h => h.trim_start_matches('[').trim_end_matches(']'),
    };
    let ip: std::net::IpAddr = host.parse().map_err(|_| bad())?;
    Ok(SocketAddr::new(ip, port))
}

async fn publish(
    addr: SocketAddr,
    topic: Vec<u8>,
    mut rx: Receiver<KvEventBatch>,
    ready: std::sync::mpsc::SyncSender<Result<SocketAddr, PublisherError>>,
) {
    let mut socket = zeromq::PubSocket::new();
    let zmq_endpoint = match addr {
        SocketAddr::V4(a) => format!("tcp://{a}"),
        SocketAddr::V6(a) => format!("tcp://[{}]:{}", a.ip(), a.port()),
    };
    let local = match socket.bind(&zmq_endpoint).await {
        Ok(zeromq::Endpoint::Tcp(host, port)) => match host.to_string().parse() {
            Ok(ip) => SocketAddr::new(ip, port),
            Err(_) => SocketAddr::new(addr.ip(), port),
        },
        Ok(other) => {
            let _ = ready.send(Err(PublisherError::Bind {
                endpoint: zmq_endpoint,
                reason: format!("bound {other} instead"),
            }));
            return;
        }
        Err(e) => {
            let _ = ready.send(Err(PublisherError::Bind {
                endpoint: zmq_endpoint,
                reason: e.to_string(),
            }));
            return;
        }
    };
    let _ = ready.send(Ok(local));
    tracing::info!("publishing KV cache events on tcp://{local}");
    while let Some(batch) = rx.recv().await {
        let [topic_frame, seq, payload] = wire::frames(&topic, &batch);
        let mut message = ZmqMessage::from(Bytes::from(topic_frame));
        message.push_back(seq.into());
        message.push_back(payload.into());
        if let Err(e) = socket.send(message).await {
            tracing::warn!(error = %e, seq = batch.seq, "publishing a KV event batch failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let p = |s| parse_endpoint(s).map(|a| a.to_string());
        assert_eq!(p("tcp://*:5557").unwrap(), "0.0.0.0:5557");
        assert_eq!(p("tcp://127.0.0.1:0").unwrap(), "127.0.0.1:0");
        assert_eq!(p("tcp://[::1]:5557").unwrap(), "[::1]:5557");
        for bad in [
            "ipc:///tmp/kv",
            "tcp://localhost",
            "tcp://*:port",
            "127.0.0.1:5557",
            "tcp://host.example:5557",
        ] {
            assert!(parse_endpoint(bad).is_err(), "{bad}");
        }
    }
}
