//! Faults at the engine: an abort reaches every choice of a request whatever state each is
//! in (queued, prompt being chunked, decoding, preempted) and leaves nothing behind; the
//! queue limit holds exactly under concurrent submissions; a device lost mid-request fails
//! the requests in flight with an error (never a wrong token), and the engine then reports
//! the fault and refuses new work.

mod common;

use std::sync::Arc;

use common::Knobs;
use ingot_engine::{EngineCore, EngineHandle, EngineRequest, RequestOutput, SubmitError};
use ingot_models::ModelSource;
use ingot_scheduler::{RequestStatus, SamplingParams};
use ingot_tensor::{Backend, DType};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

fn tiny() -> ModelSource {
    ModelSource::HfDir(common::testdata("tiny-qwen2"))
}

fn long(max_tokens: usize) -> SamplingParams {
    SamplingParams {
        ignore_eos: true,
        ..SamplingParams::greedy(max_tokens)
    }
}

/// Adds request `id` to `core` directly; its outputs arrive on the receiver.
fn add<B: Backend>(
    core: &mut EngineCore<B>,
    id: u64,
    prompt_len: u32,
    n: usize,
    params: SamplingParams,
) -> UnboundedReceiver<RequestOutput> {
    let (sink, rx) = unbounded_channel();
    let req = EngineRequest {
        id,
        prompt: (1..=prompt_len).map(|t| t % 400 + 1).collect(),
        params: SamplingParams { n, ..params },
        priority: 0,
    };
    core.add_request(req, sink).expect("request accepted");
    rx
}

/// Outputs received so far.
fn drain(rx: &mut UnboundedReceiver<RequestOutput>) -> Vec<RequestOutput> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

/// After `parent` was aborted: its sink is closed with nothing more in it, and once a step
/// has told the runner, nothing of it is left anywhere (no queue entry, no KV block, no
/// runner state).
fn assert_gone<B: Backend>(
    core: &mut EngineCore<B>,
    parent: u64,
    rx: &mut UnboundedReceiver<RequestOutput>,
) {
    assert!(core.choice_statuses(parent).is_empty());
    drain(rx);
    assert_eq!(rx.try_recv().unwrap_err(), TryRecvError::Disconnected);
    core.step();
    let s = core.stats();
    assert_eq!((s.num_running, s.num_waiting), (0, 0), "{s:?}");
    assert_eq!(s.num_free_blocks, s.num_blocks, "blocks leaked: {s:?}");
    assert_eq!(
        core.runner_tracked(),
        0,
        "the runner still tracks a request"
    );
}

#[test]
fn an_abort_reaches_queued_and_chunking_choices() {
    // A 16-token budget: the first choice's 60-token prompt is cut into chunks, and the
    // other two choices wait behind it.
    let mut core = common::core(
        tiny(),
        Knobs {
            max_num_batched_tokens: 16,
            max_num_seqs: 2,
            ..Knobs::default()
        },
    );
    let mut rx = add(&mut core, 1, 60, 3, long(50));
    core.step();
    use RequestStatus::{Preempted, Running, Waiting};
    assert_eq!(core.choice_statuses(1), [Running, Waiting, Waiting]);
    assert!(
        drain(&mut rx).is_empty(),
        "the prompt is still being computed"
    );
    core.abort(1);
    assert_gone(&mut core, 1, &mut rx);

    // And again once two choices run, one of them still chunking its prompt.
    let mut rx = add(&mut core, 2, 40, 3, long(50));
    while core.choice_statuses(2) != [Running, Running, Waiting] {
        assert!(core.step(), "the choices never both ran");
        assert!(!core.choice_statuses(2).contains(&Preempted));
    }
    core.abort(2);
    assert_gone(&mut core, 2, &mut rx);
}

#[test]
fn an_abort_reaches_decoding_choices_and_spares_the_others() {
    let mut core = common::core(tiny(), Knobs::default());
    let mut rx = add(&mut core, 1, 10, 3, long(200));
    let mut other = add(&mut core, 2, 12, 1, long(30));
    let mut tokens = [0usize; 3];
    while tokens.iter().any(|&t| t < 3) {
        core.step();
        for o in drain(&mut rx) {
            assert!(o.finish_reason.is_none() && o.error.is_none());
            tokens[o.index] += o.token_ids.len();
        }
    }
    assert_eq!(core.choice_statuses(1), [RequestStatus::Running; 3]);
    core.abort(1);
    assert!(core.choice_statuses(1).is_empty());
    // The other request runs on to its own end.
    let mut got = Vec::new();
    while core.has_unfinished() {
        core.step();
        got.extend(drain(&mut other));
    }
    let last = got.last().expect("the other request produced output");
    assert_eq!(last.usage.completion_tokens, 30);
    assert!(last.finish_reason.is_some());
    assert_gone(&mut core, 1, &mut rx);
}

#[test]
fn an_abort_reaches_preempted_choices() {
    // Six blocks of 16 tokens: each choice alone fits (20 + 70 tokens), both together
    // cannot, so one is preempted as they grow.
    let mut core = common::core(
        tiny(),
        Knobs {
            num_blocks: 6,
            ..Knobs::default()
        },
    );
    let mut rx = add(&mut core, 1, 20, 2, long(70));
    let mut steps = 0;
    while !core.choice_statuses(1).contains(&RequestStatus::Preempted) {
        assert!(core.step(), "the request ended before a preemption");
        steps += 1;
        assert!(steps < 500);
    }
    assert!(core.stats().num_preemptions_total > 0);
    core.abort(1);
    assert_gone(&mut core, 1, &mut rx);
}

/// Many threads submit at once against a queue of 6: exactly 6 wait, the rest are told the
/// queue is full, and a request asking for more sequences than remain is refused whole.
#[test]
fn the_queue_limit_is_exact_under_concurrent_submissions() {
    // The default model is slow enough on the CPU that its one running request (one
    // sequence at a time) outlasts the submissions by far; nothing waiting is admitted.
    let source = ingot_models::spec::resolve(None).unwrap();
    let core = common::core(
        source,
        Knobs {
            max_num_seqs: 1,
            ..Knobs::default()
        },
    );
    let (engine, _thread) = EngineHandle::start(core, Some(6));
    let mut running = engine.submit(vec![1, 2, 3], long(2000), 0).unwrap();
    running.blocking_next().expect("the first request runs");
    let engine = Arc::new(engine);
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let engine = engine.clone();
                s.spawn(move || engine.submit(vec![4, 5, i], long(100), 0))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(!running.is_finished());
    let accepted: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(accepted.len(), 6);
    for r in &results {
        if let Err(e) = r {
            assert!(matches!(e, SubmitError::QueueFull(6)), "{e}");
        }
    }
    drop(results);
    // The dropped streams free their places; a request of n = 7 never fits, n = 6 does.
    let wide = |n| SamplingParams { n, ..long(4) };
    let mut tries = 0;
    let ok = loop {
        match engine.submit(vec![7, 8], wide(6), 0) {
            Ok(s) => break s,
            Err(SubmitError::QueueFull(_)) if tries < 1000 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert!(matches!(
        engine.submit(vec![7, 8], wide(1), 0),
        Err(SubmitError::QueueFull(6))
    ));
    drop(ok);
    drop(running);
}

/// The device is destroyed (as a driver reset would) while two requests are in flight on
/// the GPU backend: both end with an error, every token delivered before it is the one the
/// same request gets on a healthy device, and the engine then reports the fault and
/// refuses new requests instead of producing tokens.
#[test]
fn a_lost_device_fails_requests_loudly() {
    if common::gpu().is_none() {
        return;
    }
    // A device of its own, since this test destroys it.
    let be = ingot_backend_wgpu::WgpuBackend::new(ingot_backend_wgpu::WgpuOptions {
        allow_software: true,
        ..Default::default()
    })
    .expect("a second GPU device opens");
    let core = common::core_on(be.clone(), tiny(), Knobs::default(), DType::F32, DType::F32);
    let (engine, _thread) = EngineHandle::start(core, None);
    let prompt: Vec<u32> = (10..40).collect();
    let collect = |s: &mut ingot_engine::RequestStream| {
        let mut tokens = Vec::new();
        let mut error = None;
        while let Some(o) = s.blocking_next() {
            tokens.extend(o.token_ids);
            error = error.or(o.error);
        }
        (tokens, error)
    };
    let (reference, error) = collect(&mut engine.submit(prompt.clone(), long(60), 0).unwrap());
    assert_eq!((reference.len(), error), (60, None));

    let mut first = engine.submit(prompt.clone(), long(60), 0).unwrap();
    let mut second = engine.submit(vec![3, 4, 5], long(60), 0).unwrap();
    let mut before = Vec::new();
    while before.len() < 5 {
        before.extend(first.blocking_next().unwrap().token_ids);
    }
    be.lose_device();
    let (after, error) = collect(&mut first);
    let error = error.expect("the request ends with an error");
    eprintln!("the request's error: {error}");
    let got = [before, after].concat();
    assert!(got.len() < 60, "the request finished on a lost device");
    assert_eq!(
        got,
        reference[..got.len()],
        "a token after the fault is wrong"
    );
    let (_, error) = collect(&mut second);
    assert!(error.is_some(), "the other request in flight fails too");

    let fault = engine.health().expect_err("health reports the fault");
    assert!(fault.contains("restart"), "{fault}");
    match engine.submit(prompt, long(4), 0) {
        Err(SubmitError::DeviceFailed(why)) => assert_eq!(why, fault),
        other => panic!("a new request on a lost device: {:?}", other.err()),
    }
}
