"""Load and faults against a real `ingot serve` (issue 10): a few hundred concurrent requests
of mixed kinds (streamed and not, chat and completions, n > 1, logprobs, stop strings,
seeded sampling), a fifth of them abandoned by their clients at random points, on a KV
cache small enough that requests are preempted; meanwhile a client that stops reading its
stream, and clients that send half a request and stall.

Afterwards: nothing runs, nothing waits, no KV block is in use, the server is healthy, and
every request that completed gave exactly what the same request gives alone (greedy and
seeded alike). Bounded: a fixed number of requests of at most 24 tokens each; no timing is
asserted beyond generous deadlines on things that must end.
"""

import asyncio
import json
import random
import time

import httpx

from conftest import MODEL, Server

PROMPTS = [
    "The capital of Italy is", "Water boils at", "The largest planet is",
    "def fibonacci(n):", "Monday, Tuesday,", "Photosynthesis is",
]
KINDS = ["stream", "chat", "seeded_n2", "logprobs", "stop", "abort_stream", "abort_n3", "abort_wait"]
NUM_REQUESTS = 200
MAX_TOKENS = 24
READ_TIMEOUT = 2


def body(kind, prompt):
    """The request of a kind, without `stream` (added by the caller)."""
    base = {"model": MODEL, "max_tokens": MAX_TOKENS, "temperature": 0}
    if kind == "chat":
        return {**base, "messages": [{"role": "user", "content": prompt}]}
    b = {**base, "prompt": prompt}
    if kind == "seeded_n2":
        b.update(n=2, temperature=0.8, seed=7)
    elif kind == "logprobs":
        b.update(logprobs=2)
    elif kind == "stop":
        b.update(stop=[" the", "\n\n"])
    elif kind == "abort_n3":
        b.update(n=3, temperature=0.7, seed=1)
    elif kind in ("abort_stream", "abort_wait"):
        b.update(max_tokens=MAX_TOKENS, ignore_eos=True)
    return b


def path(b):
    return "/v1/chat/completions" if "messages" in b else "/v1/completions"


def texts(response):
    """Choice texts, by index, of a whole (non-streamed) response."""
    out = {}
    for c in response["choices"]:
        out[c["index"]] = c["message"]["content"] if "message" in c else c["text"]
    return out


async def read_stream(r):
    """Choice texts, by index, and logprob counts of an SSE response read to its end."""
    out, logprobs, done = {}, 0, False
    async for line in r.aiter_lines():
        if not line.startswith("data: "):
            continue
        data = line[len("data: "):]
        if data == "[DONE]":
            done = True
            continue
        chunk = json.loads(data)
        assert "error" not in chunk, chunk
        for c in chunk["choices"]:
            piece = c["delta"].get("content") or "" if "delta" in c else c["text"]
            out[c["index"]] = out.get(c["index"], "") + piece
            if c.get("logprobs"):
                logprobs += len(c["logprobs"].get("tokens") or c["logprobs"].get("content") or [])
    assert done, "the stream ended without [DONE]"
    return out, logprobs


async def half_request(port, data):
    """Sends `data` and stalls; returns what the server answers before it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), timeout=READ_TIMEOUT + 60)
    finally:
        writer.close()


async def storm(server, solo):
    rng = random.Random(10)
    stats = {"completed": 0, "aborted": 0, "compared": 0}
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=server.url, timeout=300, limits=limits) as client:
        storm_done = asyncio.Event()

        async def one(i):
            kind = KINDS[i % len(KINDS)]
            prompt = PROMPTS[(i // len(KINDS)) % len(PROMPTS)]
            b = body(kind, prompt)
            if kind == "abort_wait":
                # A non-streamed request whose client gives up at a random moment.
                try:
                    r = await client.post(path(b), json=b, timeout=rng.uniform(0.05, 3.0))
                except httpx.TimeoutException:
                    stats["aborted"] += 1
                    return
                assert r.status_code == 200, r.text
                stats["completed"] += 1
                return
            streamed = kind in ("stream", "logprobs", "abort_stream", "abort_n3") or i % 2 == 0
            if not streamed:
                r = await client.post(path(b), json=b)
                assert r.status_code == 200, r.text
                got = texts(r.json())
            else:
                async with client.stream("POST", path(b), json={**b, "stream": True}) as r:
                    assert r.status_code == 200, await r.aread()
                    if kind.startswith("abort"):
                        # Leave after a random number of lines (possibly none).
                        lines = r.aiter_lines()
                        for _ in range(rng.randint(0, 8)):
                            try:
                                await lines.__anext__()
                            except StopAsyncIteration:
                                break
                        stats["aborted"] += 1
                        return
                    got, logprobs = await read_stream(r)
                    if kind == "logprobs":
                        assert logprobs >= 1
            stats["completed"] += 1
            want = solo[(kind, prompt)]
            assert got == want, f"{kind} {prompt!r}: under load {got!r} != alone {want!r}"
            stats["compared"] += 1

        async def slow_reader():
            # Greedy chat with 20 alternatives per token (large chunks); not a byte is read
            # until every other request is done, which must not hold them up.
            b = {**body("chat", PROMPTS[0]), "logprobs": True, "top_logprobs": 20, "stream": True}
            async with client.stream("POST", path(b), json=b) as r:
                assert r.status_code == 200
                await storm_done.wait()
                got, logprobs = await read_stream(r)
            assert got == solo[("chat", PROMPTS[0])]
            assert logprobs >= 1
            return got

        half_body = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
                     b"content-length: 200\r\n\r\n{\"prompt\": \"Hel")
        half_head = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\ncontent-le"
        stalled = [asyncio.create_task(half_request(server.port, d)) for d in [half_body] * 3 + [half_head] * 3]
        slow = asyncio.create_task(slow_reader())
        start = time.time()
        results = await asyncio.gather(*(one(i) for i in range(NUM_REQUESTS)), return_exceptions=True)
        elapsed = time.time() - start
        storm_done.set()
        errors = [r for r in results if isinstance(r, BaseException)]
        assert not errors, f"{len(errors)} requests failed, first: {errors[0]!r}"
        await asyncio.wait_for(slow, timeout=120)
        answers = await asyncio.gather(*stalled)
        for a in answers[:3]:
            assert a.startswith(b"HTTP/1.1 408"), a
            assert b'"code":"request_timeout"' in a
        for a in answers[3:]:
            assert a == b"" or a.startswith(b"HTTP/1.1 408"), a
    stats["elapsed"] = elapsed
    return stats


async def solo_runs(server, prompts=PROMPTS):
    """Each kind that completes, for each prompt, served alone."""
    solo = {}
    async with httpx.AsyncClient(base_url=server.url, timeout=300) as client:
        for kind in ["stream", "chat", "seeded_n2", "logprobs", "stop"]:
            for prompt in prompts:
                b = body(kind, prompt)
                r = await client.post(path(b), json=b)
                assert r.status_code == 200, r.text
                solo[(kind, prompt)] = texts(r.json())
    return solo


def wait_idle(server, timeout=60.0):
    deadline = time.time() + timeout
    while True:
        m = server.metrics()
        idle = (m["ingot:num_requests_running"], m["ingot:num_requests_waiting"],
                m["ingot:kv_cache_usage_perc"])
        if idle == (0, 0, 0):
            return m
        assert time.time() < deadline, f"not idle {timeout} s after the load: {idle}"
        time.sleep(0.1)


def test_load_with_aborts_preemption_slow_and_stalled_clients():
    # 12 MiB of f32 KV cache is 17 blocks of 16 tokens for this model: 16 running sequences
    # of 20 to 60 tokens need more, so the scheduler preempts.
    server = Server("--kv-cache-memory", "12MiB", "--max-num-seqs", "16",
                    "--read-timeout", str(READ_TIMEOUT))
    try:
        t = time.time()
        solo = asyncio.run(solo_runs(server))
        solo_secs = time.time() - t
        before = server.metrics()
        stats = asyncio.run(storm(server, solo))
        after = wait_idle(server)
        assert httpx.get(server.url + "/health", timeout=10).status_code == 200
        # Still serving, and still right.
        again = asyncio.run(solo_runs(server, PROMPTS[:2]))
        assert again == {k: v for k, v in solo.items() if k[1] in PROMPTS[:2]}
        preempted = after["ingot:num_preemptions_total"] - before["ingot:num_preemptions_total"]
        aborted = after["ingot:request_success_total[abort]"] - before["ingot:request_success_total[abort]"]
        assert preempted > 0, "the KV cache never ran out: the load is too light to test preemption"
        assert stats["compared"] >= NUM_REQUESTS // 2
        assert aborted >= 1
        print(f"\nload: {NUM_REQUESTS} requests + 1 slow reader + 6 stalled clients in "
              f"{stats['elapsed']:.1f} s; {stats['completed']} completed ({stats['compared']} "
              f"equal to their solo run), {stats['aborted']} abandoned by the client "
              f"({aborted:.0f} aborted in the engine), {preempted:.0f} preemptions; "
              f"solo runs {solo_secs:.1f} s")
    finally:
        server.stop()
