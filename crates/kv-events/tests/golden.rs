//! Ingot's KV event payloads byte for byte against msgspec's, the encoder vLLM publishes with:
//! testdata/kv-events/*.msgpack were written by tools/make_kv_events_golden.py from struct
//! declarations with vLLM's fields and options; the same batches encoded here must give the
//! same bytes. Also the frames around a payload, and a decode of each golden file as a
//! subscriber reads it.

use ingot_kv_cache::{BlockHash, KvCacheEvent, KvEventBatch};
use ingot_kv_events::wire;

const TS: f64 = 1757500000.25;
const FIRST: [u32; 16] = [
    0, 1, 2, 42, 127, 128, 255, 256, 271, 9125, 65535, 65536, 128000, 151643, 7, 3,
];

fn second() -> Vec<u32> {
    (100..116).collect()
}

fn both() -> Vec<u32> {
    FIRST.iter().copied().chain(second()).collect()
}

fn stored(hashes: &[u64], parent: Option<u64>, tokens: Vec<u32>, extra_key: u64) -> KvCacheEvent {
    KvCacheEvent::BlockStored {
        block_hashes: hashes.iter().map(|&h| BlockHash(h)).collect(),
        parent: parent.map(BlockHash),
        token_ids: tokens,
        block_size: 16,
        extra_key,
    }
}

fn batch(events: Vec<KvCacheEvent>) -> KvEventBatch {
    KvEventBatch {
        seq: 0,
        ts: TS,
        events,
    }
}

fn golden(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../../testdata/kv-events/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn cases() -> Vec<(&'static str, KvEventBatch)> {
    vec![
        (
            "stored.msgpack",
            batch(vec![stored(
                &[0xDEADBEEF12345678, u64::MAX],
                None,
                both(),
                0,
            )]),
        ),
        (
            "mixed.msgpack",
            batch(vec![
                stored(&[7], Some(u64::MAX), second(), 0),
                KvCacheEvent::BlockRemoved {
                    block_hashes: vec![BlockHash(1), BlockHash(0x8000000000000001)],
                },
                KvCacheEvent::AllBlocksCleared,
            ]),
        ),
        (
            "keyed.msgpack",
            batch(vec![stored(&[11, 12], None, both(), 5)]),
        ),
    ]
}

#[test]
fn payloads_equal_msgspec_bytes() {
    for (name, b) in cases() {
        assert_eq!(wire::encode_batch(&b), golden(name), "{name}");
    }
}

#[test]
fn golden_payloads_decode_as_a_subscriber_reads_them() {
    let v = rmpv::decode::read_value(&mut golden("stored.msgpack").as_slice()).unwrap();
    let parts = v.as_array().unwrap();
    assert_eq!(parts[0].as_f64(), Some(TS));
    assert_eq!(parts[2].as_u64(), Some(0));
    let e = &parts[1].as_array().unwrap()[0];
    let map = e.as_map().unwrap();
    assert_eq!(map[0].0.as_str(), Some("type"));
    assert_eq!(map[0].1.as_str(), Some("BlockStored"));
    let hashes: Vec<u64> = map[1]
        .1
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_u64().unwrap())
        .collect();
    assert_eq!(hashes, [0xDEADBEEF12345678, u64::MAX]);
}

#[test]
fn frames_are_topic_seq_payload() {
    let mut b = batch(vec![KvCacheEvent::AllBlocksCleared]);
    b.seq = 0x0102;
    let [topic, seq, payload] = wire::frames(b"kv@", &b);
    assert_eq!(topic, b"kv@");
    assert_eq!(seq, [0, 0, 0, 0, 0, 0, 1, 2]);
    assert_eq!(payload, wire::encode_batch(&b));
}
