//! Engine behaviour on real models: the default model answers a question through its chat
//! template; stop strings cut text across token boundaries; n > 1 forks seeded choices;
//! logprobs are consistent with greedy choices; dropping a stream aborts the request and
//! frees its blocks; a request that could never fit is rejected with a clear error.

mod common;

use std::time::{Duration, Instant};

use common::Knobs;
use ingot_engine::{EngineHandle, SubmitError, offline};
use ingot_models::ModelSource;
use ingot_scheduler::{AddError, FinishReason, SamplingParams};
use ingot_tensor::DType;

fn tiny() -> ModelSource {
    ModelSource::HfDir(common::testdata("tiny-qwen2"))
}

/// The default model answers through its chat template and stops at EOS.
fn knows_the_capital_of_france<B: ingot_tensor::Backend>(mut core: ingot_engine::EngineCore<B>) {
    let tok = core.tokenizer().clone();
    let messages =
        [serde_json::json!({"role": "user", "content": "What is the capital of France?"})];
    let text = tok
        .chat_template()
        .unwrap()
        .render(&messages, true)
        .unwrap();
    let prompt = tok.encode(&text, false).unwrap();
    let out = offline::generate(&mut core, vec![(prompt, SamplingParams::greedy(32))]);
    let c = &out[0].as_ref().unwrap()[0];
    assert!(c.text.contains("Paris"), "answer: {:?}", c.text);
    assert_eq!(c.finish_reason, Some(FinishReason::Stop), "ends at EOS");
}

#[test]
fn default_model_knows_the_capital_of_france() {
    let source = ingot_models::spec::resolve(None).unwrap();
    knows_the_capital_of_france(common::core(source, Knobs::default()));
}

/// The same on the GPU backend as `ingot serve --backend gpu` runs it: f16 weights and an
/// f16 KV cache (on lavapipe in CI). Catches what kernel tests on random data can miss.
#[test]
fn default_model_knows_the_capital_of_france_on_gpu() {
    let Some(be) = common::gpu() else {
        return;
    };
    let source = ingot_models::spec::resolve(None).unwrap();
    let knobs = Knobs {
        num_blocks: 64,
        ..Knobs::default()
    };
    let core = common::core_on(be, source, knobs, DType::F16, DType::F16);
    knows_the_capital_of_france(core);
}

fn greedy_text(
    core: &mut ingot_engine::EngineCore<ingot_backend_cpu::CpuBackend>,
    prompt: &[u32],
    params: SamplingParams,
) -> ingot_engine::Completion {
    offline::generate(core, vec![(prompt.to_vec(), params)])
        .remove(0)
        .unwrap()
        .remove(0)
}

#[test]
fn stop_strings_cut_across_token_boundaries() {
    let mut core = common::core(tiny(), Knobs::default());
    let tok = core.tokenizer().clone();
    let prompt = tok.encode("The quick brown fox", false).unwrap();
    let params = SamplingParams {
        ignore_eos: true,
        skip_special_tokens: false,
        ..SamplingParams::greedy(24)
    };
    let full = greedy_text(&mut core, &prompt, params.clone());
    assert_eq!(full.finish_reason, Some(FinishReason::Length));
    // Pick a stop string that spans the boundary between two tokens' texts.
    let pieces: Vec<String> = full
        .token_ids
        .iter()
        .map(|&t| tok.decode(&[t], false).unwrap())
        .collect();
    let (i, _) = pieces
        .iter()
        .enumerate()
        .skip(3)
        .find(|(i, p)| {
            let ascii = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
            ascii(p.chars().last()) && ascii(pieces[i + 1].chars().next())
        })
        .expect("two adjacent pieces meeting at ASCII letters or digits");
    let last_char = pieces[i].chars().last().unwrap();
    let first_char = pieces[i + 1].chars().next().unwrap();
    let stop = format!("{last_char}{first_char}");
    let cut = full
        .text
        .find(&stop)
        .expect("the stop string occurs in the text");
    let with_stop = SamplingParams {
        stop: vec![stop.clone()],
        ..params.clone()
    };
    let stopped = greedy_text(&mut core, &prompt, with_stop);
    assert_eq!(stopped.finish_reason, Some(FinishReason::Stop));
    assert_eq!(
        stopped.text,
        full.text[..cut],
        "text ends right before {stop:?}"
    );
    let include = SamplingParams {
        stop: vec![stop.clone()],
        include_stop_str_in_output: true,
        ..params
    };
    let kept = greedy_text(&mut core, &prompt, include);
    assert_eq!(kept.text, full.text[..cut + stop.len()]);
}

#[test]
fn n_choices_are_seeded_forks() {
    let mut core = common::core(tiny(), Knobs::default());
    let prompt: Vec<u32> = (10..60).collect();
    let p = SamplingParams {
        n: 3,
        temperature: 1.0,
        seed: Some(5),
        ignore_eos: true,
        max_tokens: 10,
        ..Default::default()
    };
    let choices = offline::generate(&mut core, vec![(prompt.clone(), p.clone())])
        .remove(0)
        .unwrap();
    assert_eq!(choices.len(), 3);
    assert!(choices.iter().all(|c| c.token_ids.len() == 10));
    assert!(
        choices[0].token_ids != choices[1].token_ids
            || choices[1].token_ids != choices[2].token_ids
    );
    // Choice i draws from seed + i: choice 1 equals a single request seeded 6.
    let single = SamplingParams {
        n: 1,
        seed: Some(6),
        ..p
    };
    let one = greedy_text(&mut core, &prompt, single);
    assert_eq!(one.token_ids, choices[1].token_ids);
    // The choices shared the prompt's full blocks through the prefix cache.
    assert!(core.stats().prefix_cache_hits >= 32);
}

#[test]
fn logprobs_match_greedy_choices() {
    let mut core = common::core(tiny(), Knobs::default());
    let prompt: Vec<u32> = (3..40).collect();
    let p = SamplingParams {
        logprobs: Some(3),
        ignore_eos: true,
        ..SamplingParams::greedy(8)
    };
    let c = greedy_text(&mut core, &prompt, p);
    assert_eq!(c.logprobs.len(), 8);
    for (lp, &t) in c.logprobs.iter().zip(&c.token_ids) {
        assert_eq!(lp.token, t);
        assert_eq!(lp.top.len(), 3);
        assert_eq!(lp.top[0].0, t, "greedy picks the most likely token");
        assert!((lp.top[0].1 - lp.logprob).abs() < 1e-6 && lp.logprob <= 0.0);
        assert!(lp.top.windows(2).all(|w| w[0].1 >= w[1].1));
    }
}

#[test]
fn dropping_a_stream_aborts_and_frees_blocks() {
    let core = common::core(tiny(), Knobs::default());
    let (engine, _thread) = EngineHandle::start(core, None);
    let prompt: Vec<u32> = (1..100).collect();
    let p = SamplingParams {
        ignore_eos: true,
        ..SamplingParams::greedy(400)
    };
    let mut stream = engine.submit(prompt, p, 0).unwrap();
    for _ in 0..3 {
        let o = stream.blocking_next().unwrap();
        assert!(o.finish_reason.is_none());
    }
    assert!(engine.stats().num_free_blocks < engine.stats().num_blocks);
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = engine.stats();
        if s.num_running == 0 && s.num_free_blocks == s.num_blocks {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "blocks not freed after abort: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The engine still serves.
    let mut s = engine
        .submit(vec![5, 6, 7], SamplingParams::greedy(2), 0)
        .unwrap();
    let mut n = 0;
    while let Some(o) = s.blocking_next() {
        n += o.token_ids.len();
    }
    assert!(n >= 1);
}

#[test]
fn impossible_requests_are_rejected_clearly() {
    let core = common::core(
        tiny(),
        Knobs {
            num_blocks: 4,
            ..Knobs::default()
        },
    );
    let (engine, _thread) = EngineHandle::start(core, None);
    let err = engine
        .submit((0..50).collect(), SamplingParams::greedy(100), 0)
        .err()
        .unwrap();
    assert!(
        matches!(err, SubmitError::Rejected(AddError::CannotFit { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("could never run"));
    let err = engine
        .submit(vec![1; 600], SamplingParams::greedy(1), 0)
        .err()
        .unwrap();
    assert!(
        matches!(err, SubmitError::Rejected(AddError::TooLong { .. })),
        "{err}"
    );
    let bad = SamplingParams {
        top_p: 0.0,
        ..SamplingParams::default()
    };
    let err = engine.submit(vec![1, 2], bad, 0).err().unwrap();
    assert!(err.to_string().contains("top_p"), "{err}");
}

#[test]
fn prompt_logprobs_survive_chunking_and_match_one_pass() {
    let prompt: Vec<u32> = (7..80).collect();
    let p = SamplingParams {
        prompt_logprobs: Some(2),
        ..SamplingParams::greedy(2)
    };
    let get = |budget| {
        let mut core = common::core(
            tiny(),
            Knobs {
                max_num_batched_tokens: budget,
                ..Knobs::default()
            },
        );
        greedy_text(&mut core, &prompt, p.clone())
            .prompt_logprobs
            .expect("prompt logprobs")
    };
    let whole = get(2048);
    assert_eq!(whole.len(), prompt.len() - 1);
    for (lp, &t) in whole.iter().zip(&prompt[1..]) {
        assert_eq!(lp.token, t);
        assert!(lp.logprob <= 0.0 && lp.top.len() == 2 && lp.top[0].1 >= lp.logprob);
    }
    // Chunks of 16 tokens: same values, each position once.
    assert_eq!(get(16), whole);
}

#[test]
fn prompt_logprobs_ignore_the_prefix_cache() {
    let mut core = common::core(tiny(), Knobs::default());
    let prompt: Vec<u32> = (7..80).collect();
    greedy_text(&mut core, &prompt, SamplingParams::greedy(1));
    let p = SamplingParams {
        prompt_logprobs: Some(1),
        ..SamplingParams::greedy(1)
    };
    let lps = greedy_text(&mut core, &prompt, p).prompt_logprobs.unwrap();
    assert_eq!(lps.len(), prompt.len() - 1);
}

/// On the GPU, rows whose only host work is log-probabilities take them from the device's
/// `top_logprobs` verb: a greedy request's chosen token is its top-1 with exactly the top-1
/// log-probability and the list is sorted; in the same batch a plain greedy request with
/// the same prompt produces the same tokens (the token still comes from `argmax`), and a
/// sampled request with log-probabilities gets a list for each of its tokens.
#[test]
fn logprobs_on_gpu_come_from_the_device() {
    let Some(be) = common::gpu() else {
        return;
    };
    let mut core = common::core_on(be, tiny(), Knobs::default(), DType::F32, DType::F32);
    let prompt: Vec<u32> = (3..40).collect();
    let with_lp = SamplingParams {
        logprobs: Some(5),
        ignore_eos: true,
        ..SamplingParams::greedy(8)
    };
    let plain = SamplingParams {
        ignore_eos: true,
        ..SamplingParams::greedy(8)
    };
    let sampled = SamplingParams {
        temperature: 0.8,
        seed: Some(3),
        logprobs: Some(2),
        ..with_lp.clone()
    };
    let out = offline::generate(
        &mut core,
        vec![
            (prompt.clone(), with_lp),
            (prompt.clone(), plain),
            (prompt, sampled),
        ],
    );
    let c = |i: usize| out[i].as_ref().unwrap()[0].clone();
    let (lp, plain, sampled) = (c(0), c(1), c(2));
    assert_eq!(
        lp.token_ids, plain.token_ids,
        "logprobs do not change greedy tokens"
    );
    assert_eq!(lp.logprobs.len(), 8);
    for (l, &t) in lp.logprobs.iter().zip(&lp.token_ids) {
        assert_eq!(l.token, t);
        assert_eq!(l.top.len(), 5);
        assert_eq!(l.top[0].0, t, "greedy picks the most likely token");
        assert_eq!(l.top[0].1, l.logprob, "same logprob for the same token");
        assert!(l.logprob <= 1e-6);
        assert!(l.top.windows(2).all(|w| w[0].1 >= w[1].1), "sorted");
    }
    assert_eq!(sampled.logprobs.len(), 8);
    for (l, &t) in sampled.logprobs.iter().zip(&sampled.token_ids) {
        assert_eq!(l.token, t);
        assert_eq!(l.top.len(), 2);
        assert!(l.logprob <= l.top[0].1 && l.top[0].1 >= l.top[1].1);
    }
}
