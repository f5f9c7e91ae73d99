//! A GPU lost mid-stream, seen through the HTTP layer (in process, on the tiny Llama, on
//! whatever adapter is present: lavapipe in CI): the stream in flight ends with an error
//! event in OpenAI's shape instead of more tokens, `/health` turns 503 with the reason, and
//! new requests are refused with 503.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use ingot_backend_wgpu::{WgpuBackend, WgpuOptions};
use ingot_engine::{EngineConfig, EngineCore, EngineHandle};
use ingot_models::{ModelFiles, ModelSource};
use ingot_runner::ModelRunner;
use ingot_server::{ServerConfig, ServerState, router};
use ingot_tensor::DType;
use serde_json::{Value, json};
use tower::ServiceExt;

/// A GPU device of this test's own (it is destroyed), or None when there is no adapter and
/// `INGOT_REQUIRE_GPU=1` does not ask for one.
fn gpu() -> Option<WgpuBackend> {
    let opts = WgpuOptions {
        allow_software: true,
        ..WgpuOptions::default()
    };
    match WgpuBackend::new(opts) {
        Ok(be) => Some(be),
        Err(e) if std::env::var("INGOT_REQUIRE_GPU").is_ok_and(|v| v == "1") => {
            panic!("INGOT_REQUIRE_GPU=1 but the GPU backend cannot open: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED: no GPU adapter, device fault test not run: {e}");
            None
        }
    }
}

fn engine(backend: WgpuBackend) -> EngineHandle {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/tiny-llama");
    let files = ModelFiles::open(ModelSource::HfDir(dir)).expect("the tiny model opens");
    let model = files
        .load_model(&backend, DType::F32)
        .expect("weights load");
    let max_model_len = model.config().max_position_embeddings;
    let eos = files.tokenizer.eos_token_ids().to_vec();
    let runner = ModelRunner::new(backend, model, 64, 16, eos).expect("runner");
    let cfg = EngineConfig {
        max_num_seqs: 8,
        max_num_batched_tokens: 256,
        max_model_len,
        block_size: 16,
        num_blocks: 64,
        enable_prefix_caching: true,
    };
    let core = EngineCore::new(runner, Arc::new(files.tokenizer), cfg);
    EngineHandle::start(core, Some(64)).0
}

fn post(body: Value) -> Request<Body> {
    Request::post("/v1/completions")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_device_fails_the_stream_and_shows_in_health() {
    let Some(be) = gpu() else {
        return;
    };
    let cfg = ServerConfig {
        model_name: "tiny".into(),
        api_key: None,
        max_request_body: 1 << 16,
        drain_timeout: Duration::from_secs(5),
        max_n: ingot_server::limits::DEFAULT_MAX_N,
        read_timeout: Duration::from_secs(30),
        tool_parser: None,
    };
    let app = router(ServerState::new(engine(be.clone()), &cfg));
    let body = json!({"prompt": "a b c", "max_tokens": 400, "ignore_eos": true, "stream": true});
    let response = app.clone().oneshot(post(body)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    for _ in 0..3 {
        body.frame().await.expect("a chunk").unwrap();
    }
    be.lose_device();
    let rest = body.collect().await.unwrap().to_bytes();
    let rest = String::from_utf8_lossy(&rest);
    let events: Vec<Value> = rest
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let last = events
        .last()
        .expect("the stream says something after the fault");
    let message = last["error"]["message"].as_str().expect("an error event");
    assert!(message.contains("restart the server"), "{message}");
    let tokens = events.iter().filter(|e| e.get("choices").is_some()).count();
    assert!(tokens < 397, "the stream ran on after the fault");

    let health = Request::get("/health").body(Body::empty()).unwrap();
    let r = app.clone().oneshot(health).await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let v: Value =
        serde_json::from_slice(&r.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(v["error"]["message"], message);

    let r = app
        .clone()
        .oneshot(post(json!({"prompt": "x", "max_tokens": 2})))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
}
