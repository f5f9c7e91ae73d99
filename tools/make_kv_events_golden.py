"""Writes testdata/kv-events/*.msgpack: KV event batches encoded by msgspec, the encoder vLLM's
publisher uses, from struct declarations with vLLM's field names, order and struct options
(vllm/distributed/kv_events.py as of vLLM 0.28 to 0.31: the batch `array_like`, the events
tagged maps with `omit_defaults`). crates/kv-events/tests/golden.rs encodes the same batches
with Ingot's writer and requires the very same bytes, so Ingot's payloads are what a vLLM
subscriber (vllm-router, Dynamo, llm-d) decodes from vLLM itself.

    python3 -m pip install msgspec && python3 tools/make_kv_events_golden.py

The cases here and in golden.rs must stay the same; change both together.
"""

from pathlib import Path
from typing import Any

import msgspec


class EventBatch(msgspec.Struct, array_like=True, omit_defaults=True, gc=False):
    ts: float
    events: list[Any]
    data_parallel_rank: int | None = None


class KVCacheEvent(msgspec.Struct, omit_defaults=True, gc=False, tag=True):
    pass


class BlockStored(KVCacheEvent):
    block_hashes: list[int]
    parent_block_hash: int | None
    token_ids: list[int]
    block_size: int
    lora_id: int | None
    medium: str | None
    lora_name: str | None
    extra_keys: list[tuple[Any, ...] | None] | None = None
    group_idx: int | None = None
    kv_cache_spec_kind: str | None = None
    kv_cache_spec_sliding_window: int | None = None


class BlockRemoved(KVCacheEvent):
    block_hashes: list[int]
    medium: str | None
    group_idx: int | None = None


class AllBlocksCleared(KVCacheEvent):
    pass


class KVEventBatch(EventBatch):
    events: list[BlockStored | BlockRemoved | AllBlocksCleared]


TS = 1757500000.25
# Token ids in every msgpack integer width a vocabulary reaches.
FIRST = [0, 1, 2, 42, 127, 128, 255, 256, 271, 9125, 65535, 65536, 128000, 151643, 7, 3]
SECOND = list(range(100, 116))


def stored(hashes, parent, tokens, extra_key=0):
    return BlockStored(
        block_hashes=hashes,
        parent_block_hash=parent,
        token_ids=tokens,
        block_size=16,
        lora_id=extra_key or None,
        medium="GPU",
        lora_name=None,
        extra_keys=[(extra_key,) if extra_key else None for _ in hashes],
        group_idx=0,
        kv_cache_spec_kind="full_attention",
    )


def batch(*events):
    return KVEventBatch(ts=TS, events=list(events), data_parallel_rank=0)


CASES = {
    # A sequence's first two blocks: no parent; hashes needing uint64.
    "stored.msgpack": batch(stored([0xDEADBEEF12345678, 0xFFFFFFFFFFFFFFFF], None, FIRST + SECOND)),
    # One step's mixed events: a chain continued, an eviction, a clear.
    "mixed.msgpack": batch(
        stored([7], 0xFFFFFFFFFFFFFFFF, SECOND),
        BlockRemoved(block_hashes=[1, 0x8000000000000001], medium="GPU", group_idx=0),
        AllBlocksCleared(),
    ),
    # Blocks under a prefix-cache namespace (extra key 5).
    "keyed.msgpack": batch(stored([11, 12], None, FIRST + SECOND, extra_key=5)),
}


def main():
    out = Path(__file__).resolve().parent.parent / "testdata" / "kv-events"
    out.mkdir(parents=True, exist_ok=True)
    encoder = msgspec.msgpack.Encoder()
    for name, value in CASES.items():
        (out / name).write_bytes(encoder.encode(value))
        print(f"wrote {out / name}")


if __name__ == "__main__":
    main()
