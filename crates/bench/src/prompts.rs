//! The prompts a run sends: synthetic ones of an exact token length, or lines of a JSONL file.
//!
//! Lengths are counted by the server's own tokenizer, so the same `--input-len` means the
//! same work on every server that uses the same vocabulary. The tokenize endpoint is found
//! by probing, in order: vLLM's `POST /tokenize {"prompt"}` (Ingot, vLLM), llama.cpp
//! server's `POST /tokenize {"content"}`, llama-cpp-python's `POST /extras/tokenize/count
//! {"input"}`. Without any, lengths are estimated at 0.75 words per token and the report
//! says so.
//!
//! A synthetic prompt is random common English words (seeded; different words for every
//! prompt, so a prefix cache cannot share them), fitted to the target in three steps:
//! grow the word list until it reaches the target, binary-search the longest word prefix
//! at or under it, then append one-token fillers (" a", ".", …) until the count is exact.
//! That is about log2(words) + 3 tokenize calls per prompt, run several prompts at a time.

use std::path::Path;
use std::sync::LazyLock;

use anyhow::{Context, Result, bail};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use hyper::{Method, StatusCode};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::http::HttpClient;

/// One prompt to send.
#[derive(Clone, Debug, PartialEq)]
pub struct Prompt {
    pub text: String,
    /// Its length in tokens, as counted (or estimated) when it was built.
    pub tokens: usize,
    /// Tokens to generate.
    pub output_len: usize,
}

/// How prompt lengths were counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenCounter {
    /// vLLM's `/tokenize` with `prompt` (Ingot, vLLM).
    VllmTokenize,
    /// llama.cpp server's `/tokenize` with `content`.
    LlamaCppTokenize,
    /// llama-cpp-python's `/extras/tokenize/count` with `input`.
    LlamaCppPythonCount,
    /// No tokenize endpoint: 0.75 words per token.
    Estimate,
}

/// Words per token when no tokenizer is reachable (OpenAI's rule of thumb for English).
pub const WORDS_PER_TOKEN: f64 = 0.75;

/// Pieces that are one token in common BPE vocabularies, tried in turn to close the last gap.
const FILLERS: [&str; 10] = [" a", ".", " I", ",", " 1", "!", " x", " the", " of", ";"];

/// Counts tokens with the server's tokenizer.
#[derive(Clone)]
pub struct Counter {
    client: HttpClient,
    model: String,
    pub kind: TokenCounter,
    /// Count as the completions endpoint would (with the tokenizer's special tokens); chat
    /// content is counted without them (the chat template adds its own).
    add_special: bool,
}

impl Counter {
    /// Probes the server for a tokenize endpoint.
    pub async fn detect(client: &HttpClient, model: &str, add_special: bool) -> Self {
        let mut c = Counter {
            client: client.clone(),
            model: model.to_string(),
            kind: TokenCounter::Estimate,
            add_special,
        };
        for kind in [
            TokenCounter::VllmTokenize,
            TokenCounter::LlamaCppTokenize,
            TokenCounter::LlamaCppPythonCount,
        ] {
            c.kind = kind;
            if c.count("Hello world").await.is_ok_and(|n| n > 0) {
                return c;
            }
        }
        c.kind = TokenCounter::Estimate;
        c
    }

    /// The number of tokens in `text`.
    pub async fn count(&self, text: &str) -> Result<usize> {
        let (path, body) = match self.kind {
            TokenCounter::VllmTokenize => (
                "/tokenize",
                json!({"model": self.model, "prompt": text, "add_special_tokens": self.add_special}),
            ),
            TokenCounter::LlamaCppTokenize => (
                "/tokenize",
                json!({"content": text, "add_special": self.add_special}),
            ),
            TokenCounter::LlamaCppPythonCount => (
                "/extras/tokenize/count",
                json!({"model": self.model, "input": text}),
            ),
            TokenCounter::Estimate => {
                let words = text.split_whitespace().count() as f64;
                return Ok((words / WORDS_PER_TOKEN).round() as usize);
            }
        };
        let r = self.client.call(Method::POST, path, Some(&body)).await?;
        if r.status != StatusCode::OK {
            bail!(
                "POST {path}: HTTP {}: {}",
                r.status,
                r.text.chars().take(200).collect::<String>()
            );
        }
        r.body
            .get("count")
            .and_then(Value::as_u64)
            .map(|n| n as usize)
            .or_else(|| r.body.get("tokens").and_then(Value::as_array).map(Vec::len))
            .with_context(|| format!("POST {path}: no 'count' or 'tokens' in {}", r.text))
    }
}

/// Common English words the synthetic prompts are drawn from.
const WORDS: &str = "\
time year people way day man thing woman life child world school state family student \
group country problem hand part place case week company system program question work \
government number night point home water room mother area money story fact month lot \
right study book eye job word business issue side kind head house service friend father \
power hour game line end member law car city community name president team minute idea \
kid body information back parent face others level office door health person art war \
history party result change morning reason research girl guy moment air teacher force \
education river garden music window paper table light market summer bridge station letter \
picture energy forest island engine signal winter be have do say go can get would make \
know will think take see come could want look use find give tell may should call try ask \
need feel become leave put mean keep let begin seem help talk turn start might show hear \
play run move like live believe hold bring happen must write provide sit stand lose pay \
meet include continue set learn lead understand watch follow stop create speak read allow \
add spend grow open walk win offer remember love consider appear buy wait serve die send \
expect build stay fall good new first last long great little own other old big high \
different small large next early young important few public bad same able quiet bright \
simple careful the of and to in for on with at by from up about into over after beneath \
under again never";

/// `n` random words, different for every `seed`.
fn random_words(rng: &mut ChaCha8Rng, n: usize) -> Vec<&'static str> {
    static POOL: LazyLock<Vec<&str>> = LazyLock::new(|| WORDS.split_whitespace().collect());
    (0..n)
        .map(|_| POOL[(rng.next_u64() % POOL.len() as u64) as usize])
        .collect()
}

/// A prompt of exactly `target` tokens by `counter`, or the nearest below when no filler
/// closes the gap (the returned `tokens` says which).
pub async fn exact_prompt(counter: &Counter, target: usize, seed: u64) -> Result<(String, usize)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    if counter.kind == TokenCounter::Estimate {
        let n = (target as f64 * WORDS_PER_TOKEN).round().max(1.0) as usize;
        return Ok((random_words(&mut rng, n).join(" "), target));
    }
    let floor = counter.count("").await.unwrap_or(0);
    if target < floor.max(1) {
        bail!("--input-len {target} is shorter than the tokens the server always adds ({floor})");
    }
    // Grow until the words reach the target.
    let mut words = random_words(&mut rng, target.max(1));
    loop {
        let text = words.join(" ");
        match counter.count(&text).await? {
            c if c == target => return Ok((text, c)),
            c if c > target => break,
            _ => {
                let more = random_words(&mut rng, words.len());
                words.extend(more);
            }
        }
    }
    // Binary search keeping count(words[..lo]) <= target < count(words[..hi]).
    let (mut lo, mut hi) = (0, words.len());
    let mut lo_count = floor;
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        let c = counter.count(&words[..mid].join(" ")).await?;
        if c <= target {
            (lo, lo_count) = (mid, c);
        } else {
            hi = mid;
        }
    }
    let mut text = words[..lo].join(" ");
    let mut count = lo_count;
    'grow: while count < target {
        for f in FILLERS {
            let candidate = if text.is_empty() {
                f.trim_start().to_string()
            } else {
                format!("{text}{f}")
            };
            let c = counter.count(&candidate).await?;
            if c > count && c <= target {
                (text, count) = (candidate, c);
                continue 'grow;
            }
        }
        break;
    }
    Ok((text, count))
}

/// `n` synthetic prompts of `input_len` tokens each, built `parallel` at a time.
pub async fn synthetic(
    counter: &Counter,
    n: usize,
    input_len: usize,
    output_len: usize,
    seed: u64,
) -> Result<Vec<Prompt>> {
    let built: Vec<(String, usize)> = stream::iter(0..n)
        .map(|i| {
            exact_prompt(
                counter,
                input_len,
                seed.wrapping_mul(1_000_003).wrapping_add(i as u64),
            )
        })
        .buffered(8)
        .try_collect()
        .await?;
    Ok(built
        .into_iter()
        .map(|(text, tokens)| Prompt {
            text,
            tokens,
            output_len,
        })
        .collect())
}

/// One line of a `--dataset` file.
#[derive(Deserialize)]
struct DatasetLine {
    prompt: String,
    /// Tokens to generate for this prompt (else `--output-len`).
    output_len: Option<usize>,
}

/// Reads a JSONL file of `{"prompt": "...", "output_len": N}` lines (blank lines skipped).
/// Prompts are used in file order, cycling when more are asked for than the file holds.
pub fn read_dataset(path: &Path) -> Result<Vec<(String, Option<usize>)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let l: DatasetLine = serde_json::from_str(line).with_context(|| {
            format!(
                "{} line {}: expected {{\"prompt\": string, \"output_len\"?: integer}}",
                path.display(),
                i + 1
            )
        })?;
        if l.output_len == Some(0) {
            bail!(
                "{} line {}: output_len must be at least 1",
                path.display(),
                i + 1
            );
        }
        out.push((l.prompt, l.output_len));
    }
    if out.is_empty() {
        bail!("{}: no prompts", path.display());
    }
    Ok(out)
}

/// `n` prompts from dataset lines (cycling), counted by `counter`.
pub async fn from_dataset(
    counter: &Counter,
    lines: &[(String, Option<usize>)],
    n: usize,
    offset: usize,
    output_len: usize,
) -> Result<Vec<Prompt>> {
    stream::iter(0..n)
        .map(|i| {
            let (text, out) = &lines[(offset + i) % lines.len()];
            async move {
                Ok(Prompt {
                    tokens: counter.count(text).await?,
                    text: text.clone(),
                    output_len: out.unwrap_or(output_len),
                })
            }
        })
        .buffered(8)
        .try_collect()
        .await
}
