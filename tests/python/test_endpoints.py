"""vLLM's extra endpoints and the operational ones: /tokenize, /detokenize, /health,
/metrics (Prometheus text with vLLM's names under `ingot:`)."""

from conftest import MODEL


def test_tokenize_detokenize_round_trip(http):
    r = http.post("/tokenize", json={"model": MODEL, "prompt": "Hello, world!", "return_token_strs": True})
    assert r.status_code == 200
    body = r.json()
    assert body["count"] == len(body["tokens"]) > 0
    assert body["max_model_len"] >= 2048
    assert len(body["token_strs"]) == body["count"]
    back = http.post("/detokenize", json={"model": MODEL, "tokens": body["tokens"]}).json()
    assert back["prompt"].endswith("Hello, world!")


def test_tokenize_messages_matches_chat_usage(http, client):
    messages = [{"role": "user", "content": "Name a color."}]
    tok = http.post("/tokenize", json={"model": MODEL, "messages": messages}).json()
    text = http.post("/detokenize", json={"tokens": tok["tokens"]}).json()["prompt"]
    assert "Name a color." in text
    r = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=1, temperature=0)
    assert r.usage.prompt_tokens == tok["count"]


def test_health_and_version(http):
    assert http.get("/health").status_code == 200
    assert http.get("/version").json()["version"]


def test_metrics_exposition(server, http):
    http.post("/v1/completions", json={"model": MODEL, "prompt": "One, two,", "max_tokens": 3, "temperature": 0})
    r = http.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    for name in ["num_requests_running", "num_requests_waiting", "kv_cache_usage_perc",
                 "prefix_cache_queries_total", "prefix_cache_hits_total", "prompt_tokens_total",
                 "generation_tokens_total"]:
        assert f"# TYPE ingot:{name} " in text, name
    for name in ["time_to_first_token_seconds", "inter_token_latency_seconds",
                 "request_time_per_output_token_seconds", "e2e_request_latency_seconds"]:
        assert f"# TYPE ingot:{name} histogram" in text, name
        assert f'ingot:{name}_bucket{{model_name="{MODEL}",le="+Inf"}}' in text
    m = server.metrics()
    assert m["ingot:generation_tokens_total"] >= 3
    assert m["ingot:time_to_first_token_seconds_count"] >= 1
    assert m["ingot:e2e_request_latency_seconds_count"] >= 1
    assert m["ingot:request_success_total[length]"] >= 1
