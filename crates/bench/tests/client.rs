//! The client against a small in-process server on 127.0.0.1:0 that streams a known SSE
//! sequence with known delays (the real `ingot serve` is exercised by
//! tests/python/test_bench_serve.py). What is checked: exact-length prompts by the server's
//! tokenizer, request bodies, token counts from `usage` (and the fallbacks without it),
//! TTFT/ITL/TPOT against the delays the server sleeps, the concurrency bound, Poisson
//! arrivals, `--max-duration`, errors, and the JSON and PNG outputs.
//!
//! Timing tolerances: sleeps never end early, so measured gaps are at least the delay minus
//! 1 ms of timer slack; upper bounds are loose (a shared, loaded CI machine).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use futures_util::stream;
use ingot_bench::load::arrival_times;
use ingot_bench::prompts::TokenCounter;
use ingot_bench::report::{BenchReport, markdown_table};
use ingot_bench::stats::{Outcome, TokenSource};
use ingot_bench::{ServeBenchArgs, benchmark, plot};
use serde_json::{Value, json};

const FIRST_DELAY: Duration = Duration::from_millis(60);
const TOKEN_DELAY: Duration = Duration::from_millis(25);
const SLACK: f64 = 0.001;

/// The fake server's tokenizer: every whitespace-separated word costs ceil(chars / 4)
/// tokens, plus one BOS token when special tokens are added. Words of 5+ characters are
/// two tokens or more, so fitting a prompt needs the filler step, not only whole words.
fn fake_count(text: &str, add_special: bool) -> usize {
    text.split_whitespace()
        .map(|w| w.chars().count().div_ceil(4))
        .sum::<usize>()
        + add_special as usize
}

#[derive(Clone, Default)]
struct Fake {
    /// Every generation request body received.
    bodies: Arc<Mutex<Vec<Value>>>,
    in_flight: Arc<Mutex<(usize, usize)>>, // (now, most)
}

async fn tokenize(Json(v): Json<Value>) -> impl IntoResponse {
    let text = v["prompt"].as_str().unwrap_or_default();
    let n = fake_count(text, v["add_special_tokens"].as_bool().unwrap_or(true));
    axum::Json(json!({"count": n, "tokens": vec![1; n], "max_model_len": 4096}))
}

fn sse(events: Vec<(Duration, String)>, fake: Fake) -> Response {
    let body = stream::unfold(
        (events.into_iter(), fake, false),
        |(mut it, fake, done)| async move {
            match it.next() {
                Some((delay, data)) => {
                    tokio::time::sleep(delay).await;
                    Some((
                        Ok::<_, std::convert::Infallible>(Bytes::from(format!("data: {data}\n\n"))),
                        (it, fake, done),
                    ))
                }
                None if !done => {
                    fake.in_flight.lock().unwrap().0 -= 1;
                    Some((
                        Ok(Bytes::from_static(b": comment\n\ndata: [DONE]\n\n")),
                        (it, fake, true),
                    ))
                }
                None => None,
            }
        },
    );
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(body))
        .unwrap()
}

/// Streams `max_tokens` one-token chunks (the first after FIRST_DELAY, the others
/// TOKEN_DELAY apart), the last with finish_reason "length", then usage unless the model
/// is "no-usage". Model "broken" answers 400.
async fn generate(State(fake): State<Fake>, chat: bool, Json(v): Json<Value>) -> Response {
    fake.bodies.lock().unwrap().push(v.clone());
    let model = v["model"].as_str().unwrap_or_default().to_string();
    if model == "broken" {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"message": "no such model"}})),
        )
            .into_response();
    }
    assert_eq!(v["stream"], true);
    assert_eq!(v["stream_options"]["include_usage"], true);
    let max_tokens = v["max_tokens"].as_u64().unwrap() as usize;
    let prompt_tokens = if chat {
        fake_count(v["messages"][0]["content"].as_str().unwrap(), false) + 5 // a template's worth
    } else {
        fake_count(v["prompt"].as_str().unwrap(), true)
    };
    {
        let mut f = fake.in_flight.lock().unwrap();
        f.0 += 1;
        f.1 = f.1.max(f.0);
    }
    let mut events = Vec::new();
    if chat {
        events.push((Duration::ZERO, json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}], "usage": null}).to_string()));
    }
    for i in 0..max_tokens {
        let delay = if i == 0 { FIRST_DELAY } else { TOKEN_DELAY };
        let finish = (i + 1 == max_tokens).then_some("length");
        let choice = if chat {
            json!({"index": 0, "delta": {"content": format!("t{i} ")}, "finish_reason": finish})
        } else {
            json!({"index": 0, "text": format!("t{i} "), "finish_reason": finish})
        };
        events.push((
            delay,
            json!({"choices": [choice], "usage": null}).to_string(),
        ));
    }
    if model != "no-usage" {
        let usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": max_tokens,
            "total_tokens": prompt_tokens + max_tokens, "prompt_tokens_details": {"cached_tokens": 0}});
        events.push((
            Duration::ZERO,
            json!({"choices": [], "usage": usage}).to_string(),
        ));
    }
    sse(events, fake)
}

/// Starts the fake server; returns its URL and state.
async fn start(with_tokenize: bool) -> (String, Fake) {
    let fake = Fake::default();
    let mut app = Router::new()
        .route(
            "/v1/models",
            get(|| async { Json(json!({"object": "list", "data": [{"id": "fake-model"}]})) }),
        )
        .route(
            "/v1/completions",
            post(|s: State<Fake>, b: Json<Value>| generate(s, false, b)),
        )
        .route(
            "/v1/chat/completions",
            post(|s: State<Fake>, b: Json<Value>| generate(s, true, b)),
        );
    if with_tokenize {
        app = app.route("/tokenize", post(tokenize));
    }
    let app = app.with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, fake)
}

fn args(url: &str, extra: &[&str]) -> ServeBenchArgs {
    let mut v = vec!["serve", "--url", url];
    v.extend_from_slice(extra);
    ServeBenchArgs::try_parse_from(v).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_at_fixed_concurrency() {
    let (url, fake) = start(true).await;
    let a = args(
        &url,
        &[
            "--num-prompts",
            "6",
            "--concurrency",
            "2",
            "--input-len",
            "23",
            "--output-len",
            "5",
            "--ignore-eos",
            "--extra-body",
            r#"{"top_k": 1}"#,
        ],
    );
    let report = benchmark(&a).await.unwrap();
    assert_eq!(report.model, "fake-model");
    assert_eq!(report.token_counter, TokenCounter::VllmTokenize);
    assert_eq!(report.runs.len(), 1);
    let run = &report.runs[0];
    assert_eq!(
        (run.concurrency, run.num_prompts, run.max_in_flight),
        (Some(2), 6, 2)
    );
    assert_eq!(
        fake.in_flight.lock().unwrap().1,
        2,
        "the server saw more than 2 at once"
    );

    // Every prompt is exactly 23 tokens by the server's count, and all differ.
    let bodies = fake.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 6);
    let mut texts: Vec<&str> = bodies
        .iter()
        .map(|b| b["prompt"].as_str().unwrap())
        .collect();
    for (b, t) in bodies.iter().zip(&texts) {
        assert_eq!(fake_count(t, true), 23, "{t:?}");
        assert_eq!(
            (
                b["max_tokens"].as_u64(),
                b["ignore_eos"].as_bool(),
                b["top_k"].as_u64()
            ),
            (Some(5), Some(true), Some(1))
        );
        assert_eq!(
            (b["model"].as_str(), b["temperature"].as_f64()),
            (Some("fake-model"), Some(0.0))
        );
    }
    texts.sort();
    texts.dedup();
    assert_eq!(texts.len(), 6);

    for r in &run.requests {
        assert_eq!(r.outcome, Outcome::Ok);
        assert_eq!(
            (r.prompt_tokens, r.output_tokens, r.output_tokens_source),
            (23, 5, TokenSource::Usage)
        );
        assert_eq!(
            (r.cached_tokens, r.finish_reason.as_deref()),
            (Some(0), Some("length"))
        );
        let ttft = r.ttft_s.unwrap();
        assert!(ttft >= FIRST_DELAY.as_secs_f64() - SLACK, "ttft {ttft}");
        assert_eq!(r.itl_s.len(), 4);
        assert!(r.itl_s.iter().all(|&g| g > 0.0 && g < 1.0), "{:?}", r.itl_s);
        // The server's sleeps add up: the last token comes at least 60 + 4 * 25 ms after the
        // request (a single gap may be shorter when the chunk before it was read late).
        let last = ttft + r.itl_s.iter().sum::<f64>();
        assert!(
            last >= (FIRST_DELAY + 4 * TOKEN_DELAY).as_secs_f64() - SLACK,
            "last token at {last}"
        );
        // e2e ends with the stream, after the usage chunk.
        assert!(
            r.e2e_s >= last && r.e2e_s < last + 0.5,
            "e2e {} vs last token {last}",
            r.e2e_s
        );
        let tpot = r.tpot_s().unwrap();
        assert!((tpot - (r.e2e_s - ttft) / 4.0).abs() < 1e-12);
    }
    let itl = run.summary.itl_ms.unwrap();
    assert!(
        itl.mean > 25.0 - 10.0 && itl.mean < 25.0 + 200.0,
        "mean ITL {} ms",
        itl.mean
    );
    let s = &run.summary;
    assert_eq!((s.completed, s.failed, s.aborted), (6, 0, 0));
    assert_eq!(
        (s.total_input_tokens, s.total_output_tokens),
        (6 * 23, 6 * 5)
    );
    // 3 waves of 2 requests, each at least 60 + 4 * 25 ms.
    assert!(
        s.duration_s >= 3.0 * 0.16 - SLACK,
        "duration {}",
        s.duration_s
    );
    assert!((s.output_throughput - 30.0 / s.duration_s).abs() < 1e-9);
    assert_eq!(s.itl_ms.unwrap().count, 6 * 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_sweep_json_and_plot() {
    let (url, fake) = start(true).await;
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("out.json");
    let png_path = dir.path().join("out.png");
    let a = args(
        &url,
        &[
            "--endpoint",
            "chat",
            "--num-prompts",
            "2",
            "--prompts-per-client",
            "2",
            "--concurrency",
            "1,3",
            "--input-len",
            "16",
            "--output-len",
            "3",
            "--label",
            "fake",
            "--seed",
            "5",
        ],
    );
    let report = benchmark(&a).await.unwrap();
    assert_eq!(report.runs.len(), 2);
    // max(2, 2 * C) prompts per point.
    assert_eq!(
        report
            .runs
            .iter()
            .map(|r| r.requests.len())
            .collect::<Vec<_>>(),
        vec![2, 6]
    );
    assert_eq!(report.runs[1].max_in_flight, 3);
    let bodies = fake.bodies.lock().unwrap().clone();
    for b in &bodies {
        // Chat content is counted without special tokens; the template adds 5 here.
        assert_eq!(
            fake_count(b["messages"][0]["content"].as_str().unwrap(), false),
            16
        );
        assert_eq!(b["max_completion_tokens"].as_u64(), Some(3));
    }
    for r in report.runs.iter().flat_map(|r| &r.requests) {
        // The role chunk with empty content does not count as the first token.
        assert!(r.ttft_s.unwrap() >= FIRST_DELAY.as_secs_f64() - SLACK);
        assert_eq!(
            (r.prompt_tokens, r.output_tokens, r.itl_s.len()),
            (21, 3, 2)
        );
    }
    report.write(&json_path).unwrap();
    let back = BenchReport::read(&json_path).unwrap();
    // JSON keeps floats to about 1e-15 relative.
    let near = |a: f64, b: f64| (a - b).abs() <= 1e-12 * (1.0 + b.abs());
    for (b, r) in back.runs.iter().zip(&report.runs) {
        let (bs, rs) = (&b.summary, &r.summary);
        assert_eq!(
            (bs.completed, bs.total_input_tokens, bs.total_output_tokens),
            (rs.completed, rs.total_input_tokens, rs.total_output_tokens)
        );
        assert!(
            near(bs.output_throughput, rs.output_throughput)
                && near(bs.ttft_ms.unwrap().p99, rs.ttft_ms.unwrap().p99)
        );
        assert_eq!(b.requests.len(), r.requests.len());
        for (x, y) in b.requests.iter().zip(&r.requests) {
            assert_eq!(
                (x.output_tokens, x.itl_s.len(), &x.outcome),
                (y.output_tokens, y.itl_s.len(), &y.outcome)
            );
            assert!(
                near(x.e2e_s, y.e2e_s) && x.itl_s.iter().zip(&y.itl_s).all(|(p, q)| near(*p, *q))
            );
        }
    }
    let table = markdown_table(&[back.clone(), back]);
    assert_eq!(
        table
            .lines()
            .filter(|l| l.starts_with("| fake | concurrency"))
            .count(),
        4
    );

    plot::draw(&[report], &png_path).unwrap();
    let png = std::fs::read(&png_path).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    // IHDR: width and height, big-endian, after the 8-byte signature and 8-byte chunk header.
    assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 1400);
    assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_usage_or_tokenize() {
    let (url, _fake) = start(false).await;
    let a = args(
        &url,
        &[
            "--model",
            "no-usage",
            "--num-prompts",
            "3",
            "--input-len",
            "12",
            "--output-len",
            "4",
        ],
    );
    let report = benchmark(&a).await.unwrap();
    assert_eq!(report.token_counter, TokenCounter::Estimate);
    let run = &report.runs[0];
    // The default load sends everything at once.
    assert_eq!(
        (run.concurrency, run.request_rate, run.max_in_flight),
        (None, None, 3)
    );
    for r in &run.requests {
        // finish_reason "length" without usage: the requested max_tokens.
        assert_eq!(
            (r.output_tokens, r.output_tokens_source, r.prompt_tokens),
            (4, TokenSource::Length, 12)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_duration_cancels_what_is_in_flight() {
    let (url, fake) = start(true).await;
    // Each request takes 60 + 39 * 25 ms ≈ 1 s; the run is cut at 0.3 s.
    let a = args(
        &url,
        &[
            "--num-prompts",
            "8",
            "--concurrency",
            "2",
            "--input-len",
            "8",
            "--output-len",
            "40",
            "--max-duration",
            "0.3",
        ],
    );
    let t = Instant::now();
    let report = benchmark(&a).await.unwrap();
    let run = &report.runs[0];
    assert!(
        run.summary.duration_s < 0.9,
        "took {}",
        run.summary.duration_s
    );
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(
        (
            run.requests.len(),
            run.summary.aborted,
            run.summary.completed
        ),
        (2, 2, 0)
    );
    assert!(run.summary.ttft_ms.is_none());
    assert_eq!(
        fake.bodies.lock().unwrap().len(),
        2,
        "requests after the deadline must not be sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_recorded_not_fatal() {
    let (url, _fake) = start(true).await;
    let a = args(
        &url,
        &[
            "--model",
            "broken",
            "--num-prompts",
            "2",
            "--input-len",
            "8",
            "--output-len",
            "2",
            "--request-rate",
            "50",
        ],
    );
    let report = benchmark(&a).await.unwrap();
    let run = &report.runs[0];
    assert_eq!((run.summary.failed, run.summary.completed), (2, 0));
    assert_eq!(run.request_rate, Some(50.0));
    match &run.requests[0].outcome {
        Outcome::Error(e) => assert!(e.contains("400") && e.contains("no such model"), "{e}"),
        o => panic!("expected an error, got {o:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_and_unreachable_servers_fail_clearly() {
    let e = benchmark(&args("https://example.com", &["--model", "m"]))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("http://"), "{e}");
    let e = benchmark(&args(
        "http://127.0.0.1:9",
        &["--model", "m", "--concurrency", "0"],
    ))
    .await
    .unwrap_err();
    assert!(e.to_string().contains("--concurrency"), "{e}");
    let e = benchmark(&args("http://127.0.0.1:9", &[]))
        .await
        .unwrap_err();
    assert!(format!("{e:#}").contains("/v1/models"), "{e:#}");
    assert!(
        ServeBenchArgs::try_parse_from([
            "serve",
            "--url",
            "http://x",
            "--concurrency",
            "2",
            "--request-rate",
            "1"
        ])
        .is_err()
    );
    assert!(
        ServeBenchArgs::try_parse_from(["serve"]).is_err(),
        "--url or --from-json is required"
    );
}

#[test]
fn poisson_arrivals_have_the_asked_rate_and_are_seeded() {
    let rate = 4.0;
    let n = 20_000;
    let t = arrival_times(n, rate, 11);
    assert_eq!(t[0], 0.0);
    assert_eq!(t, arrival_times(n, rate, 11));
    assert_ne!(t, arrival_times(n, rate, 12));
    let g: Vec<f64> = t.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(g.iter().all(|&x| x >= 0.0 && x.is_finite()));
    let mean = g.iter().sum::<f64>() / g.len() as f64;
    let var = g.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / g.len() as f64;
    // Exponential gaps: mean 1/rate, coefficient of variation 1. Standard error of the mean
    // is 0.25 / sqrt(20000) ≈ 0.0018; allow 4%.
    assert!((mean - 0.25).abs() < 0.01, "mean gap {mean}");
    assert!(
        (var.sqrt() / mean - 1.0).abs() < 0.05,
        "cv {}",
        var.sqrt() / mean
    );
    // P(gap > 1/rate) = e^-1 for an exponential.
    let above = g.iter().filter(|&&x| x > 0.25).count() as f64 / g.len() as f64;
    assert!((above - (-1.0f64).exp()).abs() < 0.02, "{above}");
    assert_eq!(arrival_times(3, f64::INFINITY, 0), vec![0.0; 3]);
}
