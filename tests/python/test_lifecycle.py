"""Request lifecycles through a real server: clients that leave abort their requests and free
their KV blocks; 64 concurrent streams each equal the same request served alone; SIGTERM
lets in-flight streams finish and the process exits 0."""

import json
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from conftest import API_KEY, MODEL

LONG = {"model": MODEL, "prompt": "Write a very long story about a dragon.", "max_tokens": 400,
        "ignore_eos": True, "temperature": 0}


def wait_idle(server, timeout=10.0):
    """Polls /metrics until no request runs or waits and no KV block is in use."""
    deadline = time.time() + timeout
    while True:
        m = server.metrics()
        idle = (m["ingot:num_requests_running"], m["ingot:num_requests_waiting"], m["ingot:kv_cache_usage_perc"])
        if idle == (0, 0, 0):
            return m
        assert time.time() < deadline, f"server not idle after {timeout} s: {idle}"
        time.sleep(0.05)


def test_dropped_stream_frees_its_blocks(server, http):
    before = wait_idle(server)
    with http.stream("POST", "/v1/completions", json={**LONG, "stream": True}) as r:
        assert r.status_code == 200
        # Keep the line iterator referenced: closing it (as a `for ... break` would) closes
        # the connection.
        lines = r.iter_lines()
        seen = 0
        while seen < 5:
            seen += next(lines).startswith("data:")
        m = server.metrics()
        assert m["ingot:num_requests_running"] == 1
        assert m["ingot:kv_cache_usage_perc"] > 0
    after = wait_idle(server)
    assert after["ingot:request_success_total[abort]"] == before["ingot:request_success_total[abort]"] + 1
    assert after["ingot:generation_tokens_total"] < before["ingot:generation_tokens_total"] + 400


def test_abandoned_non_streaming_request_is_aborted(server):
    before = wait_idle(server)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.url + "/v1/completions", json=LONG, timeout=1.0,
                   headers={"Authorization": f"Bearer {API_KEY}"})
    after = wait_idle(server)
    assert after["ingot:request_success_total[abort]"] == before["ingot:request_success_total[abort]"] + 1


PROMPTS = [
    "The capital of Italy is", "Water boils at", "The largest planet is", "A haiku about rain:",
    "def fibonacci(n):", "The opposite of hot is", "Monday, Tuesday,", "Photosynthesis is",
]


def test_64_concurrent_streams_match_serial_outputs(server):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0, timeout=300)
    args = dict(model=MODEL, max_tokens=16, temperature=0)
    alone = {p: client.completions.create(prompt=p, **args).choices[0].text for p in PROMPTS}

    def stream(i):
        prompt = PROMPTS[i % len(PROMPTS)]
        chunks = client.completions.create(prompt=prompt, stream=True, **args)
        text, finish = "", None
        for ch in chunks:
            if ch.choices:
                text += ch.choices[0].text
                finish = ch.choices[0].finish_reason or finish
        return prompt, text, finish

    start = time.time()
    with ThreadPoolExecutor(64) as pool:
        results = list(pool.map(stream, range(64)))
    elapsed = time.time() - start
    assert len(results) == 64
    for prompt, text, finish in results:
        assert finish in ("stop", "length")
        assert text == alone[prompt], f"{prompt!r}: concurrent {text!r} != alone {alone[prompt]!r}"
    wait_idle(server)
    print(f"64 streams in {elapsed:.1f} s")


def test_sigterm_drains_streams_then_exits_0(start_server):
    s = start_server()
    body = {"model": MODEL, "prompt": "List the planets of the solar system.", "max_tokens": 24,
            "ignore_eos": True, "temperature": 0, "stream": True}
    started = threading.Barrier(9)
    outcomes = [None] * 8

    def run(i):
        finish, done, count = None, False, 0
        try:
            with httpx.stream("POST", s.url + "/v1/completions", json=body, timeout=120) as r:
                for line in r.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    if count == 0:
                        started.wait(timeout=60)
                    count += 1
                    data = line[len("data:"):].strip()
                    if data == "[DONE]":
                        done = True
                        continue
                    chunk = json.loads(data)
                    if chunk["choices"]:
                        finish = chunk["choices"][0]["finish_reason"] or finish
        except Exception as e:  # recorded and asserted below
            outcomes[i] = repr(e)
            return
        outcomes[i] = (finish, done)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    started.wait(timeout=60)  # every stream has its first chunk
    s.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    with pytest.raises(httpx.HTTPError):
        httpx.get(s.url + "/health", timeout=2)  # no new connections
    for t in threads:
        t.join(timeout=120)
    assert outcomes == [("length", True)] * 8
    assert s.proc.wait(timeout=60) == 0
    assert "shutting down" in s.log_text()
