//! `ingot generate`: one prompt streamed to stdout (stdout holds only generated text,
//! speeds go to stderr), or a whole prompts file submitted at once, one JSON object per
//! line on stdout and the aggregate throughput on stderr.

use std::io::{BufRead, Write};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use ingot_engine::{EngineHandle, offline};
use ingot_scheduler::SamplingParams;
use serde::Deserialize;

use crate::backend;
use crate::setup::{self, EngineArgs};

#[derive(Args)]
pub struct GenerateArgs {
    /// The prompt; the model's chat template is applied unless --raw.
    prompt: Option<String>,
    /// One prompt per line, or JSON lines {"prompt": ..., and optional "max_tokens",
    /// "temperature", "top_p", "top_k", "seed"}; all submitted at once.
    #[arg(long, conflicts_with = "prompt")]
    prompts_file: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.7)]
    temperature: f32,
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// 0 disables top-k.
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    #[arg(long)]
    seed: Option<u64>,
    /// Tokenize the prompt as is, without the chat template.
    #[arg(long)]
    raw: bool,
    #[command(flatten)]
    engine: EngineArgs,
}

impl GenerateArgs {
    fn params(&self) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            seed: self.seed,
            max_tokens: self.max_tokens,
            ..Default::default()
        }
    }
}

pub fn run(args: GenerateArgs) -> Result<()> {
    backend::with_backend!(args.engine, |be| {
        let core = setup::build_core(&args.engine, be)?;
        match (&args.prompt, &args.prompts_file) {
            (Some(prompt), None) => stream_one(core, prompt, &args),
            (None, Some(file)) => batch(core, file, &args),
            _ => bail!("give a PROMPT or --prompts-file"),
        }
    })
}

fn stream_one<B: ingot_tensor::Backend>(
    core: ingot_engine::EngineCore<B>,
    prompt: &str,
    args: &GenerateArgs,
) -> Result<()> {
    let ids = setup::encode_prompt(core.tokenizer(), prompt, args.raw)?;
    let (engine, thread) = EngineHandle::start(core, None);
    let start = Instant::now();
    let mut stream = engine.submit(ids.clone(), args.params(), 0)?;
    let mut stdout = std::io::stdout().lock();
    let mut first = None;
    let mut usage = Default::default();
    let mut finish = None;
    while let Some(o) = stream.blocking_next() {
        if let Some(e) = o.error {
            bail!(e);
        }
        first.get_or_insert_with(|| start.elapsed());
        stdout.write_all(o.text.as_bytes())?;
        stdout.flush()?;
        usage = o.usage;
        finish = o.finish_reason;
    }
    writeln!(stdout)?;
    let total = start.elapsed();
    let ttft = first.unwrap_or(total);
    let decode = total.saturating_sub(ttft).as_secs_f64();
    eprintln!(
        "prompt: {} tokens, {:.1} tok/s | generated: {} tokens, {:.1} tok/s | finish: {}",
        usage.prompt_tokens,
        usage.prompt_tokens as f64 / ttft.as_secs_f64().max(1e-9),
        usage.completion_tokens,
        usage.completion_tokens.saturating_sub(1) as f64 / decode.max(1e-9),
        finish.map_or("none", |f| f.as_str()),
    );
    drop(stream);
    setup::stop_engine(engine, thread, std::time::Duration::from_secs(10));
    Ok(())
}

#[derive(Deserialize)]
struct PromptLine {
    prompt: String,
    max_tokens: Option<usize>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<usize>,
    seed: Option<u64>,
}

fn batch<B: ingot_tensor::Backend>(
    mut core: ingot_engine::EngineCore<B>,
    file: &std::path::Path,
    args: &GenerateArgs,
) -> Result<()> {
    let reader = std::io::BufReader::new(
        std::fs::File::open(file).with_context(|| format!("{}", file.display()))?,
    );
    let mut prompts = Vec::new();
    let mut requests = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("{}", file.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let mut params = args.params();
        let text = if line.trim_start().starts_with('{') {
            let p: PromptLine = serde_json::from_str(&line)
                .with_context(|| format!("{}:{}: invalid JSON line", file.display(), n + 1))?;
            params.max_tokens = p.max_tokens.unwrap_or(params.max_tokens);
            params.temperature = p.temperature.unwrap_or(params.temperature);
            params.top_p = p.top_p.unwrap_or(params.top_p);
            params.top_k = p.top_k.unwrap_or(params.top_k);
            params.seed = p.seed.or(params.seed);
            p.prompt
        } else {
            line
        };
        requests.push((
            setup::encode_prompt(core.tokenizer(), &text, args.raw)?,
            params,
        ));
        prompts.push(text);
    }
    let start = Instant::now();
    let results = offline::generate(&mut core, requests);
    let secs = start.elapsed().as_secs_f64();
    let mut stdout = std::io::stdout().lock();
    let (mut prompt_tokens, mut gen_tokens) = (0, 0);
    for (index, (prompt, result)) in prompts.iter().zip(results).enumerate() {
        let line = match result {
            Ok(choices) => {
                let c = &choices[0];
                prompt_tokens += c.usage.prompt_tokens;
                gen_tokens += c.usage.completion_tokens;
                serde_json::json!({
                    "index": index,
                    "prompt": prompt,
                    "text": c.text,
                    "finish_reason": c.finish_reason.map(|f| f.as_str()),
                    "prompt_tokens": c.usage.prompt_tokens,
                    "completion_tokens": c.usage.completion_tokens,
                    "error": c.error,
                })
            }
            Err(e) => serde_json::json!({"index": index, "prompt": prompt, "error": e.to_string()}),
        };
        writeln!(stdout, "{line}")?;
    }
    eprintln!(
        "{} prompts in {secs:.2} s: {prompt_tokens} prompt tokens, {gen_tokens} generated tokens, \
         {:.1} generated tok/s, {:.1} total tok/s",
        prompts.len(),
        gen_tokens as f64 / secs,
        (prompt_tokens + gen_tokens) as f64 / secs
    );
    Ok(())
}
