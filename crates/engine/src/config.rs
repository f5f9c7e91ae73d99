//! Engine settings and KV cache sizing from a memory budget.
//!
//! The budget is split among KV cache groups ([`split_kv_budget`]) once, at start-up: a
//! sliding-window group gets what `max_num_seqs` sequences can hold at once in its window
//! (its need is bounded whatever the sequence length), the full-attention groups everything
//! else. vLLM instead lets all groups share one pool of equal-size pages; a fixed split keeps
//! every layer's cache a plain tensor of its own and the kernels unchanged, and costs little
//! because the sliding need is known in advance.

/// Scheduling and cache settings (the knobs of `ingot serve`).
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub max_num_seqs: usize,
    pub max_num_batched_tokens: usize,
    /// Longest sequence (prompt + output); at most the model's own limit.
    pub max_model_len: usize,
    pub block_size: usize,
    /// Blocks of KV cache group 0 (full attention, or the only group); the runner's caches
    /// say how large each group is.
    pub num_blocks: usize,
    pub enable_prefix_caching: bool,
}

impl EngineConfig {
    pub fn kv_tokens(&self) -> usize {
        self.num_blocks * self.block_size
    }
}

/// What sizing the KV cache groups depends on.
#[derive(Clone, Copy, Debug)]
pub struct KvSizing {
    /// Bytes for the whole KV cache.
    pub budget: u64,
    pub block_size: usize,
    pub max_num_seqs: usize,
    pub max_num_batched_tokens: usize,
    pub max_model_len: usize,
}

/// Blocks for each KV cache group, given its sliding window (None: full attention) and the
/// bytes one of its blocks takes over all its layers.
///
/// A sliding group of window W needs at most `max_num_seqs` times what one sequence holds
/// between steps (`ceil(W / block) + 1` blocks) plus the blocks of one step's new tokens
/// (`max_num_batched_tokens`), and never more than full attention would. If the budget holds
/// that for every sliding group and leaves the full-attention groups at least as many blocks
/// as the largest sliding group, the sliding groups get exactly their need and the full
/// groups the rest. Otherwise (a small budget, or no full-attention group) every group gets
/// the same number of blocks, the sizing without groups; sliding groups still return blocks
/// as they leave the window, so more sequences fit.
pub fn split_kv_budget(groups: &[(Option<usize>, u64)], s: &KvSizing) -> Vec<usize> {
    let bs = s.block_size;
    let per_seq_full = s.max_model_len.div_ceil(bs);
    let need = |w: Option<usize>| {
        let spec = ingot_kv_cache::KvGroupSpec {
            sliding_window: w,
            num_blocks: 0,
        };
        let per_seq = spec.max_blocks_held(s.max_model_len, 1, bs) + 1;
        s.max_num_seqs * per_seq.min(per_seq_full) + s.max_num_batched_tokens.div_ceil(bs)
    };
    let equal = || {
        let all: u64 = groups.iter().map(|g| g.1).sum();
        vec![(s.budget / all.max(1)) as usize; groups.len()]
    };
    let full_bytes: u64 = groups.iter().filter(|g| g.0.is_none()).map(|g| g.1).sum();
    let sliding: Vec<usize> = groups
        .iter()
        .filter(|g| g.0.is_some())
        .map(|g| need(g.0))
        .collect();
    if full_bytes == 0 || sliding.is_empty() {
        return equal();
    }
    let sliding_bytes: u64 = groups
        .iter()
        .filter(|g| g.0.is_some())
        .zip(&sliding)
        .map(|(g, &n)| n as u64 * g.1)
        .sum();
    let Some(rest) = s.budget.checked_sub(sliding_bytes) else {
        return equal();
    };
    let full_blocks = (rest / full_bytes) as usize;
    if full_blocks < sliding.iter().copied().max().unwrap_or(0) {
        return equal();
    }
    let mut sliding = sliding.into_iter();
    groups
        .iter()
        .map(|g| match g.0 {
            None => full_blocks,
            Some(_) => sliding.next().expect("one need per sliding group"),
        })
        .collect()
}

/// Bytes of memory currently available to this process's host (Linux `MemAvailable`), if
/// the platform tells.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The default KV budget: a fifth of available memory, at most 4 GiB (2 GiB when the
/// platform does not say what is available).
pub fn default_kv_budget() -> u64 {
    const GIB: u64 = 1 << 30;
    available_memory().map_or(2 * GIB, |m| (m / 5).min(4 * GIB))
}

/// Parses sizes like `4GiB`, `512MiB`, `2G`, `1000000` (bytes).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size like 4GiB or 512MiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => return Err(format!("unknown size unit '{other}' in '{s}'")),
    };
    Ok((value * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4GiB").unwrap(), 4 << 30);
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("3 parsecs").is_err());
    }

    #[test]
    fn sliding_groups_get_their_need_and_full_groups_the_rest() {
        let sizing = KvSizing {
            budget: 16 << 20,
            block_size: 16,
            max_num_seqs: 4,
            max_num_batched_tokens: 64,
            max_model_len: 8192,
        };
        // Gemma 3's shape: 3 full layers, 15 sliding ones of window 512, 1 KiB per layer block.
        let groups = [(None, 3 << 10), (Some(512), 15 << 10)];
        let split = split_kv_budget(&groups, &sizing);
        // 4 sequences * (32 + 1 + 1) blocks + 4 blocks of new tokens.
        assert_eq!(split[1], 4 * 34 + 4);
        assert_eq!(split[0], ((16 << 20) - 140 * (15 << 10)) / (3 << 10));
        // Without the split every group would get 16 MiB / 18 KiB = 910 blocks.
        assert!(split[0] > 910 * 5);
        // A budget too small for the sliding need: every group the same.
        let small = KvSizing {
            budget: 64 << 10,
            ..sizing
        };
        assert_eq!(split_kv_budget(&groups, &small), vec![3, 3]);
        // Short sequences need no more than full attention would.
        let short = KvSizing {
            max_model_len: 64,
            ..sizing
        };
        assert_eq!(split_kv_budget(&groups, &short)[1], 4 * 4 + 4);
        // No full-attention layers: one equal share.
        assert_eq!(
            split_kv_budget(&[(Some(512), 1 << 10)], &sizing),
            vec![16384]
        );
    }
}
