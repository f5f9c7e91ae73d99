//! `ingot serve --kv-events-endpoint` as a KV-aware router sees it: the test subscribes to
//! the endpoint over ZeroMQ (on loopback), sends completions to the real server (the tiny
//! Llama fixture on the CPU, with a KV cache of 8 blocks so that eviction comes quickly),
//! and decodes what arrives: the blocks of a prompt stored with the hashes and tokens the
//! prefix cache holds, a repeat of the prompt storing nothing new (a cache hit), their
//! removal once other prompts evict them, and every frame and msgpack field laid out as
//! vLLM's publisher writes them.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ingot_kv_cache::hash::chain;
use rmpv::Value;
use zeromq::{Socket, SocketRecv};

const BLOCK: usize = 16;
const TOPIC: &str = "kv";

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 exchange with `Connection: close`; returns status and body.
fn http(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split(' ').nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

fn complete(port: u16, prompt: &[u32]) {
    let body = format!(r#"{{"model":"tiny","prompt":{prompt:?},"max_tokens":1,"temperature":0}}"#);
    let (status, text) = http(port, "POST", "/v1/completions", &body).expect("completion");
    assert_eq!(status, 200, "{text}");
}

fn start_server(http_port: u16, kv_port: u16) -> Server {
    let model = format!("{}/../../testdata/tiny-llama", env!("CARGO_MANIFEST_DIR"));
    let child = Command::new(env!("CARGO_BIN_EXE_ingot"))
        .args(["serve", "--model", &model, "--served-model-name", "tiny"])
        .args(["--backend", "cpu", "--kv-cache-memory", "64KiB"])
        .args(["--port", &http_port.to_string()])
        .args([
            "--kv-events-endpoint",
            &format!("tcp://127.0.0.1:{kv_port}"),
        ])
        .args(["--kv-events-topic", TOPIC])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("ingot serve starts");
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(120);
    while http(http_port, "GET", "/health", "").map(|r| r.0) != Some(200) {
        assert!(
            Instant::now() < deadline,
            "ingot serve did not become ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    server
}

fn key(v: &Value) -> &str {
    v.as_str().expect("a string key")
}

/// A map's keys in order, and its value under `k`.
fn keys(m: &Value) -> Vec<&str> {
    m.as_map()
        .expect("an event is a map")
        .iter()
        .map(|(k, _)| key(k))
        .collect()
}

fn get<'a>(m: &'a Value, k: &str) -> &'a Value {
    &m.as_map()
        .unwrap()
        .iter()
        .find(|(kk, _)| key(kk) == k)
        .unwrap_or_else(|| panic!("no field {k}"))
        .1
}

fn uints(v: &Value) -> Vec<u64> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_u64().expect("an unsigned integer"))
        .collect()
}

/// One received message: (seq, its events).
async fn next_batch(sub: &mut zeromq::SubSocket) -> (u64, Vec<Value>) {
    let msg = tokio::time::timeout(Duration::from_secs(20), sub.recv())
        .await
        .expect("a KV event batch within 20 s")
        .expect("a message");
    let frames: Vec<Vec<u8>> = msg.into_vec().into_iter().map(|b| b.to_vec()).collect();
    assert_eq!(frames.len(), 3, "[topic, seq, payload]");
    assert_eq!(frames[0], TOPIC.as_bytes());
    let seq = u64::from_be_bytes(frames[1].as_slice().try_into().expect("8-byte seq"));
    let batch = rmpv::decode::read_value(&mut frames[2].as_slice()).expect("msgpack");
    let parts = batch
        .as_array()
        .expect("the batch is an array (array_like)");
    assert_eq!(parts.len(), 3, "[ts, events, data_parallel_rank]");
    let ts = match parts[0] {
        Value::F64(ts) => ts,
        ref other => panic!("ts is a float64, got {other:?}"),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - ts).abs() < 60.0, "ts {ts} is the current time");
    assert_eq!(parts[2].as_u64(), Some(0), "data_parallel_rank");
    let events = parts[1].as_array().expect("events").clone();
    assert!(!events.is_empty(), "a batch is sent only with events");
    // The payload is exactly what this decoder read: no trailing bytes.
    let mut again = Vec::new();
    rmpv::encode::write_value(&mut again, &batch).unwrap();
    assert_eq!(again.len(), frames[2].len());
    (seq, events)
}

const STORED_KEYS: [&str; 11] = [
    "type",
    "block_hashes",
    "parent_block_hash",
    "token_ids",
    "block_size",
    "lora_id",
    "medium",
    "lora_name",
    "extra_keys",
    "group_idx",
    "kv_cache_spec_kind",
];
const REMOVED_KEYS: [&str; 4] = ["type", "block_hashes", "medium", "group_idx"];

#[test]
fn a_subscriber_sees_blocks_stored_and_evicted_in_vllm_format() {
    let (http_port, kv_port) = (free_port(), free_port());
    let _server = start_server(http_port, kv_port);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut sub = zeromq::SubSocket::new();
        sub.connect(&format!("tcp://127.0.0.1:{kv_port}"))
            .await
            .expect("connect to the publisher");
        sub.subscribe(TOPIC).await.unwrap();
        // PUB drops messages until the subscription has reached it.
        tokio::time::sleep(Duration::from_millis(500)).await;

        // 40 tokens: two full blocks once the prompt is computed.
        let a: Vec<u32> = (1..=40).collect();
        let ha = chain(&a, BLOCK, 0);
        complete(http_port, &a);
        let (seq, events) = next_batch(&mut sub).await;
        assert_eq!(seq, 0);
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(keys(e), STORED_KEYS);
        assert_eq!(get(e, "type").as_str(), Some("BlockStored"));
        assert_eq!(uints(get(e, "block_hashes")), vec![ha[0].0, ha[1].0]);
        assert!(get(e, "parent_block_hash").is_nil());
        assert_eq!(
            uints(get(e, "token_ids")),
            a[..2 * BLOCK].iter().map(|&t| t as u64).collect::<Vec<_>>()
        );
        assert_eq!(get(e, "block_size").as_u64(), Some(BLOCK as u64));
        assert!(get(e, "lora_id").is_nil() && get(e, "lora_name").is_nil());
        assert_eq!(get(e, "medium").as_str(), Some("GPU"));
        assert_eq!(
            get(e, "extra_keys"),
            &Value::Array(vec![Value::Nil, Value::Nil])
        );
        assert_eq!(get(e, "group_idx").as_u64(), Some(0));
        assert_eq!(
            get(e, "kv_cache_spec_kind").as_str(),
            Some("full_attention")
        );

        // The same prompt again is a prefix-cache hit: nothing new to store. Then two prompts
        // of 100 tokens (7 of the 8 blocks each) evict A's blocks.
        complete(http_port, &a);
        let c: Vec<u32> = (100..200).collect();
        let d: Vec<u32> = (200..300).collect();
        complete(http_port, &c);
        complete(http_port, &d);
        let mut stored = std::collections::HashSet::from([ha[0].0, ha[1].0]);
        let mut removed_a = Vec::new();
        let mut next_seq = 1;
        let (hc, hd) = (chain(&c, BLOCK, 0), chain(&d, BLOCK, 0));
        let mut stored_c = false;
        while !(stored_c && removed_a.len() == 2 && stored.contains(&hd[0].0)) {
            let (seq, events) = next_batch(&mut sub).await;
            assert_eq!(seq, next_seq, "batches are numbered without holes");
            next_seq += 1;
            for e in &events {
                match get(e, "type").as_str().unwrap() {
                    "BlockStored" => {
                        assert_eq!(keys(e), STORED_KEYS);
                        let hashes = uints(get(e, "block_hashes"));
                        assert_ne!(hashes[0], ha[0].0, "a repeat of A stores nothing");
                        if hashes[0] == hc[0].0 {
                            let want: Vec<u64> = hc.iter().map(|h| h.0).collect();
                            assert_eq!(hashes, want, "C's six full blocks in one event");
                            stored_c = true;
                        }
                        for h in hashes {
                            assert!(stored.insert(h), "stored twice");
                        }
                    }
                    "BlockRemoved" => {
                        assert_eq!(keys(e), REMOVED_KEYS);
                        assert_eq!(get(e, "medium").as_str(), Some("GPU"));
                        for h in uints(get(e, "block_hashes")) {
                            assert!(stored.remove(&h), "removed without being stored");
                            if ha.iter().any(|x| x.0 == h) {
                                removed_a.push(h);
                            }
                        }
                    }
                    other => panic!("unexpected event {other}"),
                }
            }
        }
        // A's tail block is evicted before its head (freed in reverse, LRU first).
        assert_eq!(removed_a, vec![ha[1].0, ha[0].0]);

        let (_, metrics) = http(http_port, "GET", "/metrics", "").unwrap();
        let counter = |name: &str| -> u64 {
            let line = metrics
                .lines()
                .find(|l| l.starts_with(&format!("ingot:{name}{{")))
                .unwrap_or_else(|| panic!("{name} in /metrics"));
            line.rsplit_once(' ').unwrap().1.parse().unwrap()
        };
        assert_eq!(counter("kv_event_batches_total"), next_seq);
        assert_eq!(counter("kv_event_batches_dropped_total"), 0);
    });
}
