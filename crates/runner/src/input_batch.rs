//! `InputBatch`: the host-side flat description of one step (DESIGN.md §4).
//!
//! Every scheduled sequence contributes its new tokens to one flat list of T tokens. Token
//! `j` of sequence `s` sits at position `num_computed + j` and is written, in each KV cache
//! group `g`, to slot `block_tables[g][pos / block_size] * block_size + pos % block_size`.
//! A sliding-window group's table holds `u32::MAX` (a freed block) before the window; those
//! entries go to the device as 0, like the padding after a table's end: attention never
//! reads outside the window, and no new token may land in a freed block. The logits of each
//! sequence's last new token are sampled, when that token completes its known tokens (a
//! prefill chunk that stops mid-prompt samples nothing). A sequence that asked for prompt
//! log-probabilities gets logits for every one of its rows.

/// One sequence's share of a step.
pub struct ScheduledSeq<'a> {
    /// Tokens to compute this step (a prompt chunk, or the last sampled token).
    pub new_tokens: &'a [u32],
    /// Tokens of this sequence already in the KV cache.
    pub num_computed: usize,
    /// Physical block ids per KV cache group, in logical order (`[groups][blocks]`); each
    /// covers `num_computed + new_tokens.len()`.
    pub block_tables: &'a [Vec<u32>],
    /// Whether the step's last token needs logits (false for a partial prompt chunk).
    pub sample: bool,
    /// Whether every new token's logits are wanted (prompt log-probabilities).
    pub all_logits: bool,
}

/// What one row of the returned logits is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogitsRow {
    /// Index of the sequence in the step.
    pub seq: usize,
    /// Position of the token whose output this row is.
    pub position: usize,
    /// Whether the next token is sampled from this row.
    pub sample: bool,
}

/// One KV cache group's share of the batch.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GroupInput {
    pub slot_mapping: Vec<u32>, // [T]
    pub block_tables: Vec<u32>, // [S, max_blocks], unused and freed entries 0
    pub max_blocks: usize,
}

/// A block table entry whose block was freed (out of a sliding window).
pub const FREED: u32 = u32::MAX;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct InputBatch {
    pub token_ids: Vec<u32>,         // [T]
    pub positions: Vec<u32>,         // [T]
    pub query_start_loc: Vec<u32>,   // [S + 1]
    pub seq_lens: Vec<u32>,          // [S]
    pub groups: Vec<GroupInput>,     // [groups]
    pub logits_indices: Vec<u32>,    // [R] rows of the flat batch whose logits are computed
    pub logits_rows: Vec<LogitsRow>, // [R] what each of those rows is
    pub max_seq_len: usize,
}

impl InputBatch {
    #[track_caller]
    pub fn build(seqs: &[ScheduledSeq<'_>], block_size: usize) -> Self {
        let num_groups = seqs.first().map_or(0, |s| s.block_tables.len());
        let mut b = InputBatch {
            query_start_loc: vec![0],
            groups: (0..num_groups)
                .map(|g| GroupInput {
                    max_blocks: seqs
                        .iter()
                        .map(|s| s.block_tables[g].len())
                        .max()
                        .unwrap_or(0)
                        .max(1),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        for (i, s) in seqs.iter().enumerate() {
            assert!(!s.new_tokens.is_empty(), "sequence {i} schedules no tokens");
            assert_eq!(s.block_tables.len(), num_groups, "sequence {i}: KV groups");
            let seq_len = s.num_computed + s.new_tokens.len();
            for (g, (table, group)) in s.block_tables.iter().zip(&mut b.groups).enumerate() {
                assert!(
                    table.len() * block_size >= seq_len,
                    "sequence {i}: {} blocks of group {g} cannot hold {seq_len} tokens",
                    table.len()
                );
                for pos in s.num_computed..seq_len {
                    let block = table[pos / block_size];
                    assert!(
                        block != FREED,
                        "sequence {i}: position {pos} in a freed block"
                    );
                    let slot = block as usize * block_size + pos % block_size;
                    group.slot_mapping.push(slot as u32);
                }
                let row = table.iter().map(|&id| if id == FREED { 0 } else { id });
                group.block_tables.extend(row);
                let pad = group.max_blocks - table.len();
                group.block_tables.extend(std::iter::repeat_n(0, pad));
            }
            for (j, &tok) in s.new_tokens.iter().enumerate() {
                b.token_ids.push(tok);
                b.positions.push((s.num_computed + j) as u32);
            }
            b.query_start_loc.push(b.token_ids.len() as u32);
            b.seq_lens.push(seq_len as u32);
            b.max_seq_len = b.max_seq_len.max(seq_len);
            let end = b.token_ids.len();
            let first = if s.all_logits {
                end - s.new_tokens.len()
            } else {
                end - 1
            };
            for row in first..end {
                let last = row + 1 == end;
                if s.all_logits || (last && s.sample) {
                    b.logits_indices.push(row as u32);
                    let position = s.num_computed + row + s.new_tokens.len() - end;
                    b.logits_rows.push(LogitsRow {
                        seq: i,
                        position,
                        sample: last && s.sample,
                    });
                }
            }
        }
        b
    }

    pub fn num_tokens(&self) -> usize {
        self.token_ids.len()
    }

    pub fn num_seqs(&self) -> usize {
        self.seq_lens.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq<'a>(
        t: &'a [u32],
        done: usize,
        blocks: &'a [Vec<u32>],
        sample: bool,
        all: bool,
    ) -> ScheduledSeq<'a> {
        ScheduledSeq {
            new_tokens: t,
            num_computed: done,
            block_tables: blocks,
            sample,
            all_logits: all,
        }
    }

    #[test]
    fn mixed_prefill_and_decode() {
        let tables = [[vec![3]], [vec![1, 0]], [vec![2]]];
        let seqs = [
            seq(&[5, 6, 7], 0, &tables[0], true, false),
            seq(&[9], 4, &tables[1], true, false),
            seq(&[1, 2], 2, &tables[2], false, false),
        ];
        let b = InputBatch::build(&seqs, 4);
        assert_eq!(b.token_ids, [5, 6, 7, 9, 1, 2]);
        assert_eq!(b.positions, [0, 1, 2, 4, 2, 3]);
        assert_eq!(b.groups[0].slot_mapping, [12, 13, 14, 0, 10, 11]);
        assert_eq!(b.query_start_loc, [0, 3, 4, 6]);
        assert_eq!(b.seq_lens, [3, 5, 4]);
        assert_eq!(b.groups[0].max_blocks, 2);
        assert_eq!(b.groups[0].block_tables, [3, 0, 1, 0, 2, 0]);
        assert_eq!(b.logits_indices, [2, 3]);
        let rows: Vec<(usize, usize, bool)> = b
            .logits_rows
            .iter()
            .map(|r| (r.seq, r.position, r.sample))
            .collect();
        assert_eq!(rows, [(0, 2, true), (1, 4, true)]);
        assert_eq!(b.max_seq_len, 5);
    }

    #[test]
    fn all_logits_rows_for_prompt_logprobs() {
        let tables = [[vec![1, 0]], [vec![2, 5]]];
        let seqs = [
            seq(&[9], 4, &tables[0], true, false),
            seq(&[1, 2, 3], 2, &tables[1], false, true),
        ];
        let b = InputBatch::build(&seqs, 4);
        assert_eq!(b.logits_indices, [0, 1, 2, 3]);
        let rows: Vec<(usize, usize, bool)> = b
            .logits_rows
            .iter()
            .map(|r| (r.seq, r.position, r.sample))
            .collect();
        assert_eq!(
            rows,
            [(0, 4, true), (1, 2, false), (1, 3, false), (1, 4, false)]
        );
    }

    #[test]
    fn each_group_maps_its_own_slots() {
        // Group 1 is a sliding window whose first block was freed.
        let tables = [vec![4, 6, 1], vec![FREED, 2, 3]];
        let b = InputBatch::build(&[seq(&[7, 8], 9, &tables, true, false)], 4);
        assert_eq!(b.groups[0].slot_mapping, [5, 6]);
        assert_eq!(b.groups[1].slot_mapping, [13, 14]);
        assert_eq!(b.groups[1].block_tables, [0, 2, 3]);
    }

    #[test]
    #[should_panic(expected = "freed block")]
    fn a_token_in_a_freed_block_is_refused() {
        let tables = [vec![FREED, 2]];
        InputBatch::build(&[seq(&[7], 3, &tables, true, false)], 4);
    }
}
