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
