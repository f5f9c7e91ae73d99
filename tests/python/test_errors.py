"""Raw HTTP: every error class comes back in OpenAI's JSON shape with its status."""

import json
import threading
import time

import httpx
import pytest

from conftest import API_KEY, MODEL


def assert_error(r, status, param=None):
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["type"], str) and err["type"]
    if param is not None:
        assert err["param"] == param, err
    return err


def completion(**kw):
    return {"model": MODEL, "prompt": "Hello", "max_tokens": 4, **kw}


def test_invalid_json(http):
    r = http.post("/v1/completions", content=b'{"prompt": "Hello", ', headers={"content-type": "application/json"})
    err = assert_error(r, 400)
    assert "JSON" in err["message"]
    r = http.post("/v1/chat/completions", content=b"not json at all")
    assert_error(r, 400)


@pytest.mark.parametrize("body,param", [
    (completion(temperature="hot"), "temperature"),
    (completion(max_tokens="many"), "max_tokens"),
    (completion(stop=5), "stop"),
    (completion(n=-1), "n"),
    ({"model": MODEL, "max_tokens": 4}, None),  # no prompt
])
def test_wrong_types(http, body, param):
    err = assert_error(http.post("/v1/completions", json=body), 400, param)
    assert err["type"] == "invalid_request_error"


@pytest.mark.parametrize("extra,param", [
    ({"temperature": -1}, "temperature"),
    ({"top_p": 1.5}, "top_p"),
    ({"n": 0}, "n"),
    ({"logprobs": 50}, "logprobs"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"presence_penalty": 3}, "presence_penalty"),
    ({"logit_bias": {"999999": 1}}, "logit_bias"),
    ({"prompt_logprobs": 21}, "prompt_logprobs"),
    ({"prompt_logprobs": 1, "stream": True}, "prompt_logprobs"),
])
def test_out_of_range_values(http, extra, param):
    assert_error(http.post("/v1/completions", json=completion(**extra)), 400, param)


def test_chat_validation(http):
    base = {"model": MODEL, "max_tokens": 4}
    r = http.post("/v1/chat/completions", json={**base, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]})
    err = assert_error(r, 400)
    assert "image_url" in err["message"]
    r = http.post("/v1/chat/completions", json={**base, "messages": [{"role": "user", "content": "hi"}],
                                                "top_logprobs": 2})
    assert_error(r, 400, "top_logprobs")
    r = http.post("/v1/chat/completions", json={**base, "messages": []})
    assert_error(r, 400, "messages")


def test_prompt_too_long_says_the_numbers(http):
    tokens = http.post("/tokenize", json={"prompt": "Hello there"}).json()
    max_len = tokens["max_model_len"]
    r = http.post("/v1/completions", json=completion(prompt="Hello there", max_tokens=max_len))
    err = assert_error(r, 400, "max_tokens")
    assert str(max_len) in err["message"]
    assert str(tokens["count"] + max_len) in err["message"]
    long_prompt = " ".join(["word"] * (max_len + 10))
    r = http.post("/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": long_prompt}]})
    assert_error(r, 400)


def test_missing_or_wrong_api_key(server):
    body = completion()
    assert_error(httpx.post(server.url + "/v1/completions", json=body), 401)
    assert_error(httpx.post(server.url + "/v1/completions", json=body,
                            headers={"Authorization": "Bearer wrong"}), 401)
    assert_error(httpx.get(server.url + "/v1/models", headers={"Authorization": API_KEY}), 401)
    # Operational endpoints stay open, as in vLLM.
    assert httpx.get(server.url + "/health").status_code == 200


def test_unknown_model_and_route(http):
    err = assert_error(http.post("/v1/completions", json=completion(model="gpt-4")), 404, "model")
    assert "gpt-4" in err["message"]
    assert_error(http.post("/v1/chat/completions", json={"model": "nope", "messages": [
        {"role": "user", "content": "hi"}]}), 404, "model")
    assert_error(http.get("/v1/models/nope"), 404)
    assert_error(http.get("/v1/nothing-here"), 404)
    assert_error(http.post("/no/such/route", json={}), 404)
    assert_error(http.get("/v1/completions"), 405)


def test_body_over_the_limit(http):
    big = json.dumps(completion(prompt="x" * 100_000)).encode()
    err = assert_error(http.post("/v1/completions", content=big, headers={"content-type": "application/json"}), 413)
    assert "65536" in err["message"]


def test_queue_full_is_503_with_retry_after(start_server):
    s = start_server("--max-num-seqs", "1", "--max-queue", "1")
    long = {"model": MODEL, "prompt": "Tell me a long story.", "max_tokens": 200, "ignore_eos": True,
            "temperature": 0, "stream": True}
    with httpx.Client(base_url=s.url, timeout=60) as c:
        with c.stream("POST", "/v1/completions", json=long) as running:
            lines = running.iter_lines()
            next(line for line in lines if line.startswith("data:"))  # A is running

            waiting_done = threading.Event()

            def wait_in_queue():
                try:
                    with httpx.stream("POST", s.url + "/v1/completions", json=long, timeout=60) as r:
                        for _ in r.iter_lines():
                            if waiting_done.is_set():
                                break
                except httpx.HTTPError:
                    pass

            t = threading.Thread(target=wait_in_queue)
            t.start()
            try:
                deadline = time.time() + 30
                while s.metrics()["ingot:num_requests_waiting"] < 1:
                    assert time.time() < deadline, "the second request never waited"
                    time.sleep(0.05)
                r = c.post("/v1/completions", json={**long, "stream": False})
                err = assert_error(r, 503)
                assert int(r.headers["retry-after"]) >= 1
                assert err["type"] == "server_error"
            finally:
                waiting_done.set()
        t.join(timeout=60)


def chat(**kw):
    return {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, **kw}


@pytest.mark.parametrize("body,param", [
    (completion(n=1_000_000), "n"),
    (completion(n=129), "n"),
    (completion(n=2, best_of=1_000_000), "best_of"),
    (completion(prompt=["Hi"] * 16, n=128), "n"),
    (completion(prompt=[[1, 2]] * 1025), "prompt"),
    (completion(stop=[f"s{i}" for i in range(65)]), "stop"),
    (completion(stop="x" * 1025), "stop"),
    (completion(logit_bias={str(i): 1 for i in range(1025)}), "logit_bias"),
    (completion(stop_token_ids=[1] * 1025), "stop_token_ids"),
    (completion(max_tokens=2**64 - 1), "max_tokens"),
    (completion(max_tokens=2**63), "max_tokens"),
    (completion(prompt="word " * 12_000), "prompt"),
])
def test_completion_limits(http, body, param):
    """Every request dimension is bounded; each limit is a 400 naming its field."""
    err = assert_error(http.post("/v1/completions", json=body), 400, param)
    assert err["type"] == "invalid_request_error"


@pytest.mark.parametrize("body,param", [
    (chat(n=1_000_000), "n"),
    (chat(messages=[{"role": "user", "content": "Hi"}] * 2049), "messages"),
    (chat(messages=[{"role": "user", "content": [{"type": "text", "text": "x"}] * 1025}]), "messages[0].content"),
    (chat(messages=[{"role": "user", "content": "word " * 12_000}]), "messages"),
    (chat(max_completion_tokens=2**64 - 1), "max_tokens"),
    (chat(stop=["x"] * 65), "stop"),
])
def test_chat_limits(http, body, param):
    assert_error(http.post("/v1/chat/completions", json=body), 400, param)


def test_limits_leave_legitimate_use_alone(http):
    """At each limit exactly, the request is served."""
    r = http.post("/v1/completions", json=completion(
        n=128, max_tokens=1, stop=[f"stop{i}" for i in range(64)],
        logit_bias={str(i): 0.5 for i in range(1024)}, stop_token_ids=list(range(1024))))
    assert r.status_code == 200, r.text
    assert len(r.json()["choices"]) == 128
    r = http.post("/v1/chat/completions", json=chat(
        messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}] * 8))
    assert r.status_code == 200, r.text


def test_queue_limit_counts_sequences(start_server):
    """--max-queue counts sequences: a request asking for more than the queue holds is a 400."""
    s = start_server("--max-queue", "4")
    r = httpx.post(s.url + "/v1/completions", json=completion(n=5), timeout=60)
    assert_error(r, 400, "n")
    assert "--max-queue" in r.json()["error"]["message"]
    r = httpx.post(s.url + "/v1/completions", json=completion(prompt=["a", "b"], n=2), timeout=60)
    assert r.status_code == 200, r.text
