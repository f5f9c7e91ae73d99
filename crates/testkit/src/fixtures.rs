//! The transformers references of the tiny random-weight models under `testdata/tiny-*`
//! (made by `tools/make_tiny_models.py`): `reference.json` lists each prompt (text, token
//! ids, greedy continuation, offset and shape of its logits) and names a little-endian f32
//! file holding every prompt's logits `[T, V]` back to back.
//!
//! Loading reads both files whole (a few MB); problems come back as errors naming the file
//! and the field, not as panics.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// `testdata/<rel>` of the repository; `INGOT_TESTDATA` overrides the `testdata/` folder for
/// test binaries run away from their build tree (the lent GPU machine).
pub fn testdata(rel: &str) -> PathBuf {
    match std::env::var_os("INGOT_TESTDATA") {
        Some(dir) => PathBuf::from(dir).join(rel),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata")
            .join(rel),
    }
}

/// One reference prompt.
pub struct Prompt {
    pub name: String,
    pub text: String,
    pub add_special: bool,
    pub ids: Vec<u32>,    // [T]
    pub logits: Vec<f32>, // [T, V]
    pub greedy: Vec<u32>, // [16] greedy continuation
}

/// Everything in one fixture's `reference.json`.
pub struct References {
    pub vocab_size: usize,
    pub prompts: Vec<Prompt>,
}

/// Reads `dir/reference.json` and the logits file it names.
pub fn references(dir: &Path) -> Result<References, String> {
    let json_path = dir.join("reference.json");
    let at = json_path.display();
    let text = std::fs::read_to_string(&json_path).map_err(|e| format!("{at}: {e}"))?;
    let json: Value = serde_json::from_str(&text).map_err(|e| format!("{at}: {e}"))?;
    let str_of = |v: &Value, key: &str| -> Result<String, String> {
        v[key]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("{at}: `{key}` is not a string"))
    };
    let u64_of = |v: &Value, key: &str| -> Result<u64, String> {
        v[key]
            .as_u64()
            .ok_or_else(|| format!("{at}: `{key}` is not an unsigned integer"))
    };
    let ids_of = |v: &Value, key: &str| -> Result<Vec<u32>, String> {
        let bad = || format!("{at}: `{key}` is not a list of u32");
        v[key]
            .as_array()
            .ok_or_else(bad)?
            .iter()
            .map(|x| {
                x.as_u64()
                    .and_then(|x| u32::try_from(x).ok())
                    .ok_or_else(bad)
            })
            .collect()
    };

    let logits_path = dir.join(str_of(&json, "logits_file")?);
    let bytes =
        std::fs::read(&logits_path).map_err(|e| format!("{}: {e}", logits_path.display()))?;
    if bytes.len() % 4 != 0 {
        return Err(format!(
            "{}: {} bytes is not a whole number of f32",
            logits_path.display(),
            bytes.len()
        ));
    }
    let all: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();

    let list = json["prompts"]
        .as_array()
        .ok_or_else(|| format!("{at}: `prompts` is not a list"))?;
    let mut prompts = Vec::with_capacity(list.len());
    for p in list {
        let name = str_of(p, "name")?;
        let off = u64_of(p, "logits_offset")? as usize;
        let shape = ids_of(p, "logits_shape")?;
        let n = shape.iter().map(|&x| x as usize).product::<usize>();
        let logits = all
            .get(off..off + n)
            .ok_or_else(|| {
                format!(
                    "{}: prompt {name}: logits {off}..{} past the end ({} floats)",
                    logits_path.display(),
                    off + n,
                    all.len()
                )
            })?
            .to_vec();
        prompts.push(Prompt {
            text: str_of(p, "text")?,
            add_special: p["add_special_tokens"].as_bool().ok_or_else(|| {
                format!("{at}: prompt {name}: `add_special_tokens` is not a bool")
            })?,
            ids: ids_of(p, "token_ids")?,
            greedy: ids_of(p, "greedy_tokens")?,
            logits,
            name,
        });
    }
    Ok(References {
        vocab_size: u64_of(&json, "vocab_size")? as usize,
        prompts,
    })
}

/// Index of the largest element (the first one on ties; NaN never wins).
pub fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv { (i, v) } else { (bi, bv) }
        })
        .0
}

/// max |ours − reference| / max |reference| (DESIGN.md §9.3's logit error).
pub fn max_rel_error(ours: &[f32], reference: &[f32]) -> f32 {
    let max_ref = reference.iter().fold(0f32, |m, x| m.max(x.abs()));
    let max_diff = ours
        .iter()
        .zip(reference)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    max_diff / max_ref
}

/// A block table for `tokens` tokens in blocks of `bs`, scattered and descending
/// (`…, 7, 4, 1`), so a prefill through it exercises non-contiguous, non-monotonic blocks.
pub fn scattered_blocks(tokens: usize, bs: usize) -> Vec<u32> {
    (0..tokens.div_ceil(bs) as u32)
        .rev()
        .map(|b| b * 3 + 1)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_llama_references_are_consistent() {
        let r = references(&testdata("tiny-llama")).unwrap();
        assert!(!r.prompts.is_empty());
        for p in &r.prompts {
            assert_eq!(p.logits.len(), p.ids.len() * r.vocab_size, "{}", p.name);
            assert!(p.logits.iter().all(|x| x.is_finite()), "{}", p.name);
        }
    }

    #[test]
    fn helpers_on_hand_checked_values() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -2.0]), 1);
        assert_eq!(max_rel_error(&[1.0, -2.5], &[1.5, -4.0]), 1.5 / 4.0);
        assert_eq!(scattered_blocks(33, 16), vec![7, 4, 1]);
    }

    #[test]
    fn missing_directory_is_an_error_naming_the_file() {
        let err = references(Path::new("/nonexistent/tiny")).err().unwrap();
        assert!(err.contains("/nonexistent/tiny/reference.json"), "{err}");
    }
}
