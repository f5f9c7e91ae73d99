"""KV cache events (`ingot serve --kv-events-endpoint`) received as a vLLM consumer receives
them: a libzmq SUB socket (pyzmq) on loopback, and each payload decoded by msgspec into
struct types declared with vLLM's fields and options (vllm/distributed/kv_events.py), which
rejects a payload whose layout, tags or field types differ from what vLLM sends.

The replica serves the default model with a KV cache of 17 blocks: a prompt's full blocks
are announced stored with their token ids, and evicted (removed) once other prompts need
the room.
"""

import time
from typing import Any

import httpx
import msgspec
import pytest
import zmq

from conftest import MODEL, Server, free_port


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


BLOCK = 16
TOPIC = b"kv-events"


@pytest.fixture(scope="module")
def replica():
    kv_port = free_port()
    # 720 KiB per block for the default model (f32 KV on the CPU): 17 blocks.
    server = Server("--backend", "cpu", "--kv-cache-memory", "12MiB",
                    "--kv-events-endpoint", f"tcp://127.0.0.1:{kv_port}",
                    "--kv-events-topic", TOPIC.decode())
    server.kv_port = kv_port
    yield server
    server.stop()


def complete(server, prompt):
    r = httpx.post(server.url + "/v1/completions", timeout=120, json={"model": MODEL, "prompt": prompt, "max_tokens": 1, "temperature": 0})
    assert r.status_code == 200, r.text


def test_events_decode_with_vllm_types_over_libzmq(replica):
    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.connect(f"tcp://127.0.0.1:{replica.kv_port}")
    sub.setsockopt(zmq.SUBSCRIBE, TOPIC)
    sub.setsockopt(zmq.RCVTIMEO, 30_000)
    time.sleep(0.5)  # a PUB socket drops messages until the subscription reaches it
    decoder = msgspec.msgpack.Decoder(KVEventBatch)
    try:
        a = list(range(1000, 1040))  # 40 tokens: two full blocks
        complete(replica, a)
        topic, seq, payload = sub.recv_multipart()
        assert topic == TOPIC
        first_seq = int.from_bytes(seq, "big")
        batch = decoder.decode(payload)
        assert batch.data_parallel_rank == 0 and abs(batch.ts - time.time()) < 60
        [stored] = batch.events
        assert isinstance(stored, BlockStored)
        assert stored.token_ids == a[:2 * BLOCK] and stored.block_size == BLOCK
        assert stored.parent_block_hash is None and len(stored.block_hashes) == 2
        assert stored.medium == "GPU" and stored.group_idx == 0
        assert stored.kv_cache_spec_kind == "full_attention" and stored.extra_keys == [None, None]
        held = set(stored.block_hashes)

        # Prompts of 200 tokens (13 of the 17 blocks each) push A's blocks out.
        for start in (5000, 6000):
            complete(replica, list(range(start, start + 200)))
        removed = set()
        expected_seq = first_seq + 1
        while not set(stored.block_hashes) <= removed:
            topic, seq, payload = sub.recv_multipart()
            assert int.from_bytes(seq, "big") == expected_seq
            expected_seq += 1
            for e in decoder.decode(payload).events:
                if isinstance(e, BlockStored):
                    assert len(e.token_ids) == BLOCK * len(e.block_hashes)
                    held |= set(e.block_hashes)
                elif isinstance(e, BlockRemoved):
                    assert set(e.block_hashes) <= held, "removed blocks were stored before"
                    held -= set(e.block_hashes)
                    removed |= set(e.block_hashes)
        metrics = replica.metrics()
        assert metrics["ingot:kv_event_batches_total"] == expected_seq
        assert metrics["ingot:kv_event_batches_dropped_total"] == 0
    finally:
        sub.close(linger=0)
