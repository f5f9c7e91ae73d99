//! vLLM's KV event wire format: one ZeroMQ message per batch, three frames
//! `[topic, seq (u64, 8 bytes big-endian), payload]`, the payload a MessagePack
//! `KVEventBatch` exactly as vLLM's publisher writes it with msgspec
//! (`vllm/distributed/kv_events.py`, checked against vLLM 0.28 to 0.31):
//!
//! ```text
//! KVEventBatch      array  [ts: float64, events: [event...], data_parallel_rank: 0]
//! BlockStored       map    {type: "BlockStored", block_hashes: [uint...], parent_block_hash: uint|nil,
//!                           token_ids: [uint...], block_size, lora_id: nil, medium: "GPU",
//!                           lora_name: nil, extra_keys: [nil...], group_idx: 0,
//!                           kv_cache_spec_kind: "full_attention"}
//! BlockRemoved      map    {type: "BlockRemoved", block_hashes: [uint...], medium: "GPU", group_idx: 0}
//! AllBlocksCleared  map    {type: "AllBlocksCleared"}
//! ```
//!
//! The batch is a positional array (msgspec `array_like`); events are maps tagged by `type`
//! with keys in vLLM's field order, and fields whose value is their default left out
//! (`omit_defaults`: `kv_cache_spec_sliding_window`). Integers take msgpack's shortest form,
//! as msgspec writes them. Block hashes are Ingot's 64-bit chain hashes as unsigned integers,
//! the form vLLM sends by default (`VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES=1`); like vLLM's they
//! are opaque names: a consumer matches prompts through the blocks' `token_ids`, or through
//! the parent chain, never by recomputing them. `medium` is vLLM's name for the engine's own
//! KV cache (as opposed to an offload tier), whichever device holds it. A nonzero extra key
//! (a prefix-cache namespace such as a LoRA id) is sent as `lora_id` and as each block's
//! one-element `extra_keys` tuple.

use ingot_kv_cache::{KvCacheEvent, KvEventBatch};
use rmp::encode;

/// vLLM's name for the engine's primary KV cache tier (`MEDIUM_GPU`).
pub const MEDIUM: &str = "GPU";
/// The kind of KV cache group every block belongs to: Ingot keeps one group whose layers
/// all cache the whole sequence.
pub const SPEC_KIND: &str = "full_attention";

/// The three frames of `batch` under `topic`.
pub fn frames(topic: &[u8], batch: &KvEventBatch) -> [Vec<u8>; 3] {
    [
        topic.to_vec(),
        batch.seq.to_be_bytes().to_vec(),
        encode_batch(batch),
    ]
}

/// The msgpack payload of one batch.
pub fn encode_batch(batch: &KvEventBatch) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(64 + 16 * batch.events.len()));
    w.array(3);
    w.f64(batch.ts);
    w.array(batch.events.len());
    for e in &batch.events {
        w.event(e);
    }
    w.uint(0); // data_parallel_rank: one engine, rank 0.
    w.0
}

/// A `Vec` that msgpack values are appended to (writing to memory cannot fail).
struct Writer(Vec<u8>);

impl Writer {
    fn array(&mut self, len: usize) {
        encode::write_array_len(&mut self.0, len as u32).expect("writing to memory");
    }

    fn map(&mut self, len: usize) {
        encode::write_map_len(&mut self.0, len as u32).expect("writing to memory");
    }

    fn str(&mut self, s: &str) {
        encode::write_str(&mut self.0, s).expect("writing to memory");
    }

    fn uint(&mut self, v: u64) {
        encode::write_uint(&mut self.0, v).expect("writing to memory");
    }

    fn f64(&mut self, v: f64) {
        encode::write_f64(&mut self.0, v).expect("writing to memory");
    }

    fn nil(&mut self) {
        encode::write_nil(&mut self.0).expect("writing to memory");
    }

    fn uints(&mut self, vs: impl ExactSizeIterator<Item = u64>) {
        self.array(vs.len());
        for v in vs {
            self.uint(v);
        }
    }

    fn event(&mut self, e: &KvCacheEvent) {
        match e {
            KvCacheEvent::BlockStored {
                block_hashes,
                parent,
                token_ids,
                block_size,
                extra_key,
            } => {
                self.map(11);
                self.str("type");
                self.str("BlockStored");
                self.str("block_hashes");
                self.uints(block_hashes.iter().map(|h| h.0));
                self.str("parent_block_hash");
                match parent {
                    Some(p) => self.uint(p.0),
                    None => self.nil(),
                }
                self.str("token_ids");
                self.uints(token_ids.iter().map(|&t| u64::from(t)));
                self.str("block_size");
                self.uint(*block_size as u64);
                self.str("lora_id");
                match extra_key {
                    0 => self.nil(),
                    k => self.uint(*k),
                }
                self.str("medium");
                self.str(MEDIUM);
                self.str("lora_name");
                self.nil();
                self.str("extra_keys");
                self.array(block_hashes.len());
                for _ in block_hashes {
                    match extra_key {
                        0 => self.nil(),
                        k => {
                            self.array(1);
                            self.uint(*k);
                        }
                    }
                }
                self.str("group_idx");
                self.uint(0);
                self.str("kv_cache_spec_kind");
                self.str(SPEC_KIND);
            }
            KvCacheEvent::BlockRemoved { block_hashes } => {
                self.map(4);
                self.str("type");
                self.str("BlockRemoved");
                self.str("block_hashes");
                self.uints(block_hashes.iter().map(|h| h.0));
                self.str("medium");
                self.str(MEDIUM);
                self.str("group_idx");
                self.uint(0);
            }
            KvCacheEvent::AllBlocksCleared => {
                self.map(1);
                self.str("type");
                self.str("AllBlocksCleared");
            }
        }
    }
}
