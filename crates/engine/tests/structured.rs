//! Structured output through the engine on the default model: constrained requests give
//! output valid for their grammar (JSON schema, regex, choice), seeded and greedy; a
//! constrained request gives the same tokens alone and batched with unconstrained ones (and
//! leaves theirs unchanged); running out of tokens ends with `length`; an invalid grammar is
//! refused; the GPU backend, which applies the masks on the device (`mask_logits`)
//! instead of reading logits back, gives the CPU backend's tokens; and jump-forward (forced
//! runs appended in one step, computed as one chunk) gives the tokens of one step per
//! token, on the CPU and on the GPU.

mod common;

use common::Knobs;
use ingot_engine::{EngineCore, FinishReason, StructuredOutput, SubmitError, offline};
use ingot_scheduler::SamplingParams;
use ingot_tensor::{Backend, DType};

const SCHEMA: &str = r#"{"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 16},
    "age": {"type": "integer", "minimum": 0, "maximum": 120},
    "pets": {"type": "array", "items": {"enum": ["cat", "dog", "fish"]}, "maxItems": 3}},
    "required": ["name", "age", "pets"], "additionalProperties": false}"#;

fn prompt<B: Backend>(core: &EngineCore<B>, text: &str) -> Vec<u32> {
    let tok = core.tokenizer();
    let t = tok
        .chat_template()
        .unwrap()
        .render(
            &[serde_json::json!({"role": "user", "content": text})],
            true,
        )
        .unwrap();
    tok.encode(&t, false).unwrap()
}

fn constrained(
    spec: StructuredOutput,
    temperature: f32,
    seed: u64,
    max_tokens: usize,
) -> SamplingParams {
    SamplingParams {
        temperature,
        seed: Some(seed),
        max_tokens,
        structured: Some(spec),
        ..SamplingParams::default()
    }
}

fn check_person(text: &str) {
    let v: serde_json::Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert!(
        v["name"].as_str().is_some_and(|n| n.chars().count() <= 16),
        "{text}"
    );
    assert!(v["age"].as_u64().is_some_and(|a| a <= 120), "{text}");
    assert!(v["pets"].as_array().is_some_and(|p| p.len() <= 3), "{text}");
}

/// The requests of the mixed batch: constrained (schema, regex, choice; greedy and seeded)
/// and unconstrained.
fn mixed<B: Backend>(core: &EngineCore<B>) -> Vec<(Vec<u32>, SamplingParams)> {
    let p = prompt(core, "Describe a person as JSON.");
    let q = prompt(core, "What is your phone number?");
    let plain = prompt(core, "Tell me about foxes.");
    vec![
        (
            p.clone(),
            constrained(StructuredOutput::JsonSchema(SCHEMA.into()), 0.0, 0, 80),
        ),
        (
            p.clone(),
            constrained(StructuredOutput::JsonSchema(SCHEMA.into()), 0.9, 7, 80),
        ),
        (
            q.clone(),
            constrained(
                StructuredOutput::Regex("[0-9]{3}-[0-9]{4}".into()),
                0.8,
                3,
                20,
            ),
        ),
        (
            q,
            constrained(
                StructuredOutput::Choice(vec!["yes".into(), "no".into(), "it depends".into()]),
                0.7,
                5,
                8,
            ),
        ),
        (
            plain.clone(),
            SamplingParams {
                temperature: 0.0,
                max_tokens: 16,
                ..SamplingParams::default()
            },
        ),
        (
            plain,
            SamplingParams {
                temperature: 0.8,
                seed: Some(9),
                max_tokens: 16,
                ignore_eos: true,
                ..SamplingParams::default()
            },
        ),
    ]
}

fn run<B: Backend>(
    core: &mut EngineCore<B>,
    reqs: Vec<(Vec<u32>, SamplingParams)>,
) -> Vec<offline::Completion> {
    offline::generate(core, reqs)
        .into_iter()
        .map(|r| r.expect("accepted").remove(0))
        .collect()
}

fn check_mixed(out: &[offline::Completion]) {
    for c in &out[..2] {
        assert_eq!(c.finish_reason, Some(FinishReason::Stop), "{}", c.text);
        check_person(&c.text);
    }
    let phone = out[2].text.as_bytes();
    assert!(
        phone.len() == 8
            && phone[3] == b'-'
            && phone.iter().filter(|b| b.is_ascii_digit()).count() == 7,
        "{}",
        out[2].text
    );
    assert!(
        ["yes", "no", "it depends"].contains(&out[3].text.as_str()),
        "{}",
        out[3].text
    );
}

#[test]
fn constrained_output_is_valid_and_batch_invariant() {
    let source = ingot_models::spec::resolve(None).expect("default model");
    let mut core = common::core(source, Knobs::default());
    let reqs = mixed(&core);
    let together = run(&mut core, reqs.clone());
    check_mixed(&together);
    for (i, r) in reqs.into_iter().enumerate() {
        let alone = run(&mut core, vec![r]);
        assert_eq!(alone[0].token_ids, together[i].token_ids, "request {i}");
    }
    assert_eq!(core.runner_tracked(), 0);
    // Many seeds: every output valid.
    let p = prompt(&core, "Describe a person as JSON.");
    let many: Vec<_> = (0..12)
        .map(|s| {
            (
                p.clone(),
                constrained(
                    StructuredOutput::JsonSchema(SCHEMA.into()),
                    1.0,
                    100 + s,
                    80,
                ),
            )
        })
        .collect();
    let out = run(&mut core, many);
    for c in &out {
        assert_eq!(c.finish_reason, Some(FinishReason::Stop), "{}", c.text);
        check_person(&c.text);
    }
    assert!(
        out.iter().any(|c| c.text != out[0].text),
        "sampling samples"
    );
    let stats = core.stats();
    assert!(
        stats.structured_steps_total > 0
            && stats.structured_rows_total >= stats.structured_steps_total
    );
}

#[test]
fn length_and_invalid_grammars() {
    let source = ingot_models::spec::resolve(None).expect("default model");
    let mut core = common::core(source, Knobs::default());
    let p = prompt(&core, "Describe a person as JSON.");
    let out = run(
        &mut core,
        vec![(
            p.clone(),
            constrained(StructuredOutput::JsonSchema(SCHEMA.into()), 0.0, 0, 3),
        )],
    );
    assert_eq!(out[0].finish_reason, Some(FinishReason::Length));
    assert_eq!(out[0].token_ids.len(), 3);
    assert!(out[0].text.starts_with('{'));
    let bad = offline::generate(
        &mut core,
        vec![(
            p.clone(),
            constrained(StructuredOutput::Regex("a(".into()), 0.0, 0, 3),
        )],
    );
    assert!(
        matches!(&bad[0], Err(SubmitError::InvalidGrammar(m)) if m.contains("regex")),
        "{bad:?}"
    );
    // n > 1: each choice follows the grammar on its own.
    let mut params = constrained(
        StructuredOutput::Choice(vec!["red".into(), "blue".into()]),
        1.0,
        1,
        5,
    );
    params.n = 4;
    let out = offline::generate(&mut core, vec![(p, params)])
        .remove(0)
        .unwrap();
    assert_eq!(out.len(), 4);
    assert!(out.iter().all(|c| c.text == "red" || c.text == "blue"));
    assert_eq!(core.runner_tracked(), 0);
}

#[test]
fn constrained_requests_agree_on_cpu_and_gpu() {
    let Some((mut cpu, mut gpu)) = common::default_model_on_cpu_and_gpu() else {
        return;
    };
    let (cpu_reqs, gpu_reqs) = (mixed(&cpu), mixed(&gpu));
    let on_cpu = run(&mut cpu, cpu_reqs);
    let on_gpu = run(&mut gpu, gpu_reqs);
    check_mixed(&on_cpu);
    check_mixed(&on_gpu);
    let same = on_cpu
        .iter()
        .zip(&on_gpu)
        .filter(|(a, b)| a.token_ids == b.token_ids)
        .count();
    for (a, b) in on_cpu.iter().zip(&on_gpu) {
        if a.token_ids != b.token_ids {
            eprintln!("differs: cpu {:?}\n         gpu {:?}", a.text, b.text);
        }
    }
    // Logits agree to ~1e-5, so only a near-tie may move one sampled request.
    assert!(
        same >= on_cpu.len() - 1,
        "only {same} of {} agree",
        on_cpu.len()
    );
}

/// Keys long enough that the grammar forces runs of several tokens.
const LONG_KEYS: &str = r#"{"type": "object", "properties": {
    "the_full_name_of_the_person": {"type": "string", "maxLength": 12},
    "the_age_of_the_person_in_whole_years": {"type": "integer", "minimum": 0, "maximum": 120},
    "is_this_person_a_registered_voter": {"type": "boolean"}},
    "required": ["the_full_name_of_the_person", "the_age_of_the_person_in_whole_years",
                 "is_this_person_a_registered_voter"],
    "additionalProperties": false}"#;

/// Requests where jump-forward matters, mixed with unconstrained ones: long forced runs
/// (greedy and sampled), `max_tokens` cutting a forced run, a stop string inside forced
/// text, a request asking for log-probabilities (which takes forced tokens one per step),
/// and `n = 2` choices that share a forced prefix.
fn jump_mix<B: Backend>(core: &EngineCore<B>) -> Vec<(Vec<u32>, SamplingParams)> {
    let p = prompt(core, "Describe a person as JSON.");
    let plain = prompt(core, "Tell me about foxes.");
    let long =
        |t, seed, max| constrained(StructuredOutput::JsonSchema(LONG_KEYS.into()), t, seed, max);
    let mut stopped = constrained(StructuredOutput::JsonSchema(SCHEMA.into()), 0.0, 0, 80);
    stopped.stop = vec!["age".into()];
    let mut with_logprobs = long(0.0, 0, 60);
    with_logprobs.logprobs = Some(2);
    let mut two = constrained(
        StructuredOutput::Choice(vec![
            "it depends on the weather".into(),
            "it does not matter at all".into(),
        ]),
        1.0,
        11,
        20,
    );
    two.n = 2;
    vec![
        (p.clone(), long(0.0, 0, 80)),
        (p.clone(), long(0.9, 5, 80)),
        (p.clone(), long(0.0, 0, 6)),
        (p.clone(), stopped),
        (p.clone(), with_logprobs),
        (p.clone(), two),
        (
            plain.clone(),
            SamplingParams {
                temperature: 0.0,
                max_tokens: 24,
                ..SamplingParams::default()
            },
        ),
        (
            plain,
            SamplingParams {
                temperature: 0.8,
                seed: Some(9),
                max_tokens: 24,
                ignore_eos: true,
                ..SamplingParams::default()
            },
        ),
    ]
}

/// Runs [`jump_mix`] with jump-forward on and off; checks both give the same tokens, text
/// and finish reasons, and that jump-forward took forced runs in fewer steps.
fn jump_forward_matches_one_step_per_token<B: Backend>(core: &mut EngineCore<B>) {
    let reqs = jump_mix(core);
    let generate = |core: &mut EngineCore<B>| -> (Vec<Vec<offline::Completion>>, u64, u64) {
        let before = core.stats();
        let out = offline::generate(core, reqs.clone())
            .into_iter()
            .map(|r| r.expect("accepted"))
            .collect();
        let after = core.stats();
        (
            out,
            after.steps_total - before.steps_total,
            after.structured_forced_tokens_total - before.structured_forced_tokens_total,
        )
    };
    core.set_jump_forward(false);
    let (off, off_steps, off_forced) = generate(core);
    core.set_jump_forward(true);
    let (on, on_steps, on_forced) = generate(core);
    for (i, (a, b)) in off.iter().zip(&on).enumerate() {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert_eq!(
                x.token_ids, y.token_ids,
                "request {i} choice {}: {:?} vs {:?}",
                x.index, x.text, y.text
            );
            assert_eq!(x.text, y.text, "request {i}");
            assert_eq!(x.finish_reason, y.finish_reason, "request {i}");
            assert_eq!(
                x.usage.completion_tokens, y.usage.completion_tokens,
                "request {i}"
            );
            assert_eq!(x.logprobs.len(), y.logprobs.len(), "request {i}");
        }
    }
    // The long-key requests end valid; the cut one ends with `length` inside a forced run.
    for c in [&on[0][0], &on[1][0]] {
        assert_eq!(c.finish_reason, Some(FinishReason::Stop), "{}", c.text);
        let v: serde_json::Value = serde_json::from_str(&c.text).expect("valid JSON");
        assert!(
            v["the_age_of_the_person_in_whole_years"].is_u64(),
            "{}",
            c.text
        );
    }
    assert_eq!(on[2][0].finish_reason, Some(FinishReason::Length));
    assert_eq!(on[2][0].token_ids.len(), 6);
    assert!(
        on[2][0].text.starts_with("{\"the_full_name"),
        "{}",
        on[2][0].text
    );
    // The stop string ends the request at the token that completes it.
    assert_eq!(on[3][0].finish_reason, Some(FinishReason::Stop));
    assert!(!on[3][0].text.contains("age"), "{}", on[3][0].text);
    assert_eq!(on[4][0].logprobs.len(), on[4][0].token_ids.len());
    assert!(on[5].iter().all(|c| c.text.starts_with("it d")));
    eprintln!(
        "jump-forward: {on_steps} steps (off: {off_steps}); forced tokens {on_forced} (off: {off_forced})"
    );
    assert!(
        on_forced >= 20 && on_forced >= off_forced,
        "{on_forced} vs {off_forced}"
    );
    // Alone, the greedy long-key request takes its forced runs in far fewer steps (in the
    // mix above the request asking for log-probabilities sets the pace either way).
    let alone = vec![reqs[0].clone()];
    let steps = |core: &mut EngineCore<B>, on: bool| {
        core.set_jump_forward(on);
        let before = core.stats().steps_total;
        let out = offline::generate(core, alone.clone());
        let c = out[0].as_ref().expect("accepted")[0].clone();
        (core.stats().steps_total - before, c.token_ids)
    };
    let (steps_off, tokens_off) = steps(core, false);
    let (steps_on, tokens_on) = steps(core, true);
    assert_eq!(tokens_on, tokens_off);
    assert_eq!(tokens_on, on[0][0].token_ids);
    eprintln!(
        "alone: {steps_on} steps with jump-forward, {steps_off} without, {} tokens",
        tokens_on.len()
    );
    assert!(
        steps_on + 20 <= steps_off,
        "{steps_on} steps with jump-forward, {steps_off} without"
    );
    assert_eq!(core.runner_tracked(), 0);
}

#[test]
fn jump_forward_gives_the_tokens_of_one_step_per_token() {
    let source = ingot_models::spec::resolve(None).expect("default model");
    let mut core = common::core(source, Knobs::default());
    jump_forward_matches_one_step_per_token(&mut core);
}

#[test]
fn jump_forward_gives_the_tokens_of_one_step_per_token_on_gpu() {
    let Some(gpu) = common::gpu() else {
        return;
    };
    let source = ingot_models::spec::resolve(None).expect("default model");
    let mut core = common::core_on(gpu, source, Knobs::default(), DType::F16, DType::F16);
    jump_forward_matches_one_step_per_token(&mut core);
}
