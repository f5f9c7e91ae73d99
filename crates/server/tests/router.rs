//! The router in process, on the tiny random-weight Llama of testdata/ (no network, no
//! default model): responses and SSE streams in OpenAI's shapes, streamed text equal to the
//! non-streamed text, the usage chunk, API-key and unknown-route errors, and a stream whose
//! body is dropped half-way aborting its request and freeing its KV blocks, and `/get_load`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use ingot_backend_cpu::CpuBackend;
use ingot_engine::{EngineConfig, EngineCore, EngineHandle};
use ingot_models::{ModelFiles, ModelSource};
use ingot_runner::ModelRunner;
use ingot_server::{ServerConfig, ServerState, router};
use ingot_tensor::DType;
use serde_json::{Value, json};
use tower::ServiceExt;

const NAME: &str = "tiny";

fn engine() -> EngineHandle {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/tiny-llama");
    let files = ModelFiles::open(ModelSource::HfDir(dir)).expect("the tiny model opens");
    let backend = CpuBackend::new();
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
    EngineHandle::start(core, None).0
}

fn app(engine: EngineHandle, api_key: Option<&str>) -> Router {
    let cfg = ServerConfig {
        model_name: NAME.into(),
        api_key: api_key.map(str::to_string),
        max_request_body: 1 << 16,
        drain_timeout: Duration::from_secs(5),
        max_n: ingot_server::limits::DEFAULT_MAX_N,
        read_timeout: Duration::from_secs(30),
        tool_parser: None,
    };
    router(ServerState::new(engine, &cfg))
}

fn post(path: &str, body: Value) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

async fn call(app: &Router, req: Request<Body>) -> (StatusCode, Vec<u8>) {
    let r = app.clone().oneshot(req).await.unwrap();
    let status = r.status();
    (
        status,
        r.into_body().collect().await.unwrap().to_bytes().to_vec(),
    )
}

/// The JSON payloads of an SSE body, checking the framing and the final `[DONE]`.
fn sse_events(bytes: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(bytes).unwrap();
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.last(), Some(&"data: [DONE]"));
    events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").expect("data field")).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_and_completions_streamed_equal_non_streamed() {
    let app = app(engine(), None);
    let messages = json!([{"role": "user", "content": "hello there"}]);
    let body = json!({"model": NAME, "messages": messages, "max_tokens": 12, "temperature": 0.9,
        "seed": 3, "ignore_eos": true});
    let (status, bytes) = call(&app, post("/v1/chat/completions", body.clone())).await;
    assert_eq!(status, StatusCode::OK);
    let whole: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(whole["object"], "chat.completion");
    assert_eq!(whole["choices"][0]["finish_reason"], "length");
    assert_eq!(whole["usage"]["completion_tokens"], 12);
    let usage = &whole["usage"];
    assert_eq!(
        usage["total_tokens"],
        usage["prompt_tokens"].as_u64().unwrap() + 12
    );

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let (status, bytes) = call(&app, post("/v1/chat/completions", streamed)).await;
    assert_eq!(status, StatusCode::OK);
    let chunks = sse_events(&bytes);
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        text,
        whole["choices"][0]["message"]["content"].as_str().unwrap()
    );
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    for key in ["prompt_tokens", "completion_tokens", "total_tokens"] {
        assert_eq!(last["usage"][key], whole["usage"][key], "{key}");
    }
    // The same prompt again: its full blocks come from the prefix cache.
    assert_eq!(last["usage"]["prompt_tokens_details"]["cached_tokens"], 16);
    assert!(
        chunks[..chunks.len() - 1]
            .iter()
            .all(|c| c["usage"].is_null())
    );

    let body = json!({"model": NAME, "prompt": "one two three", "max_tokens": 8, "temperature": 0,
        "n": 2, "logprobs": 2, "ignore_eos": true});
    let (status, bytes) = call(&app, post("/v1/completions", body.clone())).await;
    assert_eq!(status, StatusCode::OK);
    let whole: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(whole["object"], "text_completion");
    let choices = whole["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    assert_eq!(
        choices[0]["text"], choices[1]["text"],
        "greedy choices agree"
    );
    assert_eq!(
        choices[0]["logprobs"]["tokens"].as_array().unwrap().len(),
        8
    );
    assert_eq!(whole["usage"]["completion_tokens"], 16);
    let mut streamed = body;
    streamed["stream"] = json!(true);
    let (_, bytes) = call(&app, post("/v1/completions", streamed)).await;
    for (index, choice) in choices.iter().enumerate() {
        let text: String = sse_events(&bytes)
            .iter()
            .filter(|c| c["choices"][0]["index"] == index)
            .filter_map(|c| c["choices"][0]["text"].as_str().map(str::to_string))
            .collect();
        assert_eq!(text, choice["text"].as_str().unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_openai_shaped() {
    let app = app(engine(), Some("sekrit"));
    let check = |status: StatusCode, bytes: &[u8], want: StatusCode| {
        assert_eq!(status, want, "{}", String::from_utf8_lossy(bytes));
        let v: Value = serde_json::from_slice(bytes).unwrap();
        let keys: Vec<&String> = v["error"].as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 4, "{v}");
        v
    };
    let body = json!({"model": NAME, "prompt": "x", "max_tokens": 2});
    let (s, b) = call(&app, post("/v1/completions", body.clone())).await;
    check(s, &b, StatusCode::UNAUTHORIZED);
    let authed = |mut r: Request<Body>| {
        r.headers_mut()
            .insert(header::AUTHORIZATION, "Bearer sekrit".parse().unwrap());
        r
    };
    let (s, _) = call(&app, authed(post("/v1/completions", body.clone()))).await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = call(
        &app,
        authed(post(
            "/v1/completions",
            json!({"model": "other", "prompt": "x"}),
        )),
    )
    .await;
    assert_eq!(
        check(s, &b, StatusCode::NOT_FOUND)["error"]["param"],
        "model"
    );
    let (s, b) = call(
        &app,
        authed(Request::get("/v1/nowhere").body(Body::empty()).unwrap()),
    )
    .await;
    check(s, &b, StatusCode::NOT_FOUND);
    let bad = Request::post("/v1/completions")
        .body(Body::from("{oops"))
        .unwrap();
    let (s, b) = call(&app, authed(bad)).await;
    check(s, &b, StatusCode::BAD_REQUEST);
    let big = json!({"prompt": "x".repeat(1 << 17)});
    let (s, b) = call(&app, authed(post("/v1/completions", big))).await;
    check(s, &b, StatusCode::PAYLOAD_TOO_LARGE);
    let (s, _) = call(&app, Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_stream_aborts_its_request() {
    let engine = engine();
    let app = app(engine.clone(), None);
    let body = json!({"model": NAME, "prompt": "a b c", "max_tokens": 500, "ignore_eos": true,
        "stream": true});
    let response = app
        .clone()
        .oneshot(post("/v1/completions", body))
        .await
        .unwrap();
    let mut body = response.into_body();
    for _ in 0..3 {
        body.frame().await.expect("a chunk").unwrap();
    }
    assert_eq!(engine.stats().num_running, 1);
    drop(body);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = engine.stats();
        if s.num_running == 0 && s.num_waiting == 0 && s.num_free_blocks == s.num_blocks {
            break;
        }
        assert!(Instant::now() < deadline, "request not aborted: {s:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (_, metrics) = call(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    let text = String::from_utf8(metrics).unwrap();
    assert!(
        text.contains(
            "ingot:request_success_total{model_name=\"tiny\",finished_reason=\"abort\"} 1"
        )
    );
}

/// `/get_load` as vllm-router's `power_of_two` policy reads it: `{"load": N}`, the requests
/// running and waiting; a stream in flight counts, and none once it is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_load_counts_requests_in_flight() {
    let engine = engine();
    let app = app(engine.clone(), Some("k"));
    let load = |app: Router| async move {
        let (s, b) = call(&app, Request::get("/get_load").body(Body::empty()).unwrap()).await;
        assert_eq!(s, StatusCode::OK, "no key is needed outside /v1");
        serde_json::from_slice::<Value>(&b).unwrap()
    };
    assert_eq!(load(app.clone()).await["load"], 0);
    let body = json!({"model": NAME, "prompt": "a b c", "max_tokens": 500, "ignore_eos": true,
        "stream": true, "n": 2});
    let mut req = post("/v1/completions", body);
    req.headers_mut()
        .insert(header::AUTHORIZATION, "Bearer k".parse().unwrap());
    let mut stream = app.clone().oneshot(req).await.unwrap().into_body();
    stream.frame().await.expect("a chunk").unwrap();
    let busy = load(app.clone()).await;
    assert_eq!(busy["load"], 2, "{busy}");
    assert_eq!(busy["num_requests_running"], 2, "{busy}");
    assert_eq!(busy["num_requests_waiting"], 0, "{busy}");
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(10);
    while load(app.clone()).await["load"] != 0 {
        assert!(Instant::now() < deadline, "the dropped stream still counts");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Structured output and tool calls through the router (the tiny model's random weights
/// still write only what the grammar allows): a regex and a choice on completions, a
/// schema on chat, 400s with the parser's message, and streamed forced tool calls whose
/// deltas carry each choice's call `index` and end with `finish_reason: "tool_calls"`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structured_output_and_tool_calls() {
    let app = app(engine(), None);
    let body = json!({"model": NAME, "prompt": "hello", "max_tokens": 20, "temperature": 0.9,
        "seed": 1, "n": 2, "structured_outputs": {"regex": "[ab]{3}-[0-9]"}});
    let (status, bytes) = call(&app, post("/v1/completions", body)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    for c in v["choices"].as_array().unwrap() {
        let t = c["text"].as_str().unwrap().as_bytes();
        assert!(t.len() == 5 && t[..3].iter().all(|b| *b == b'a' || *b == b'b') && t[3] == b'-');
        assert_eq!(c["finish_reason"], "stop");
    }
    let body = json!({"model": NAME, "prompt": "hello", "max_tokens": 20, "temperature": 0,
        "guided_choice": ["left", "right"]});
    let (_, bytes) = call(&app, post("/v1/completions", body)).await;
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert!(["left", "right"].contains(&v["choices"][0]["text"].as_str().unwrap()));

    let schema = json!({"type": "object", "properties": {"ok": {"type": "boolean"},
        "size": {"enum": ["s", "m", "l"]}}, "required": ["ok", "size"], "additionalProperties": false});
    let body = json!({"model": NAME, "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 40, "temperature": 1.0, "seed": 4,
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}});
    let (status, bytes) = call(&app, post("/v1/chat/completions", body)).await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    let out: Value =
        serde_json::from_str(v["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert!(out["ok"].is_boolean() && ["s", "m", "l"].contains(&out["size"].as_str().unwrap()));

    let body = json!({"model": NAME, "prompt": "x", "max_tokens": 5, "guided_regex": "(a"});
    let (status, bytes) = call(&app, post("/v1/completions", body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("regex"),
        "{v}"
    );

    let tools = json!([{"type": "function", "function": {"name": "set_size",
        "parameters": {"type": "object", "properties": {"size": {"enum": ["s", "m", "l"]}},
                       "required": ["size"], "additionalProperties": false}}}]);
    let body = json!({"model": NAME, "messages": [{"role": "user", "content": "hi"}],
        "tools": tools, "tool_choice": "required", "parallel_tool_calls": false,
        "max_tokens": 60, "temperature": 1.0, "seed": 2, "n": 2, "stream": true});
    let (status, bytes) = call(&app, post("/v1/chat/completions", body)).await;
    assert_eq!(status, StatusCode::OK);
    let chunks = sse_events(&bytes);
    for choice in 0..2 {
        let mine: Vec<&Value> = chunks
            .iter()
            .flat_map(|c| c["choices"].as_array().unwrap())
            .filter(|c| c["index"] == choice)
            .collect();
        let calls: Vec<&Value> = mine
            .iter()
            .filter_map(|c| c["delta"]["tool_calls"].as_array())
            .flatten()
            .collect();
        // One call, streamed: the first delta names it, later ones carry argument text.
        assert!(!calls.is_empty(), "{mine:?}");
        assert!(calls.iter().all(|c| c["index"] == 0), "{mine:?}");
        assert_eq!(calls[0]["function"]["name"], "set_size");
        assert!(calls[1..].iter().all(|c| c.get("id").is_none()), "{mine:?}");
        let text: String = calls
            .iter()
            .map(|c| c["function"]["arguments"].as_str().unwrap())
            .collect();
        let args: Value = serde_json::from_str(&text).unwrap();
        assert!(["s", "m", "l"].contains(&args["size"].as_str().unwrap()));
        assert_eq!(mine.last().unwrap()["finish_reason"], "tool_calls");
    }
}
