"""`ingot bench serve` against a real `ingot serve` on loopback: the JSON's token counts
match what the server counted (its usage, and its /metrics counters), prompts have the exact
length asked for, the concurrency bound holds, and the plot is a PNG."""

import json
import subprocess

from conftest import API_KEY, ingot_bin


def bench(server, tmp_path, *flags):
    out = tmp_path / "out.json"
    cmd = [ingot_bin(), "bench", "serve", "--url", server.url, "--api-key", API_KEY,
           "--json", str(out), *flags]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{' '.join(cmd)}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return json.loads(out.read_text()), r.stdout


def test_completions_sweep_matches_server_usage(start_server, tmp_path):
    # A server of its own, so its counters move only with this benchmark.
    server = start_server("--api-key", API_KEY)
    before = server.metrics()
    plot = tmp_path / "out.png"
    report, stdout = bench(server, tmp_path, "--num-prompts", "8", "--concurrency", "4",
                           "--input-len", "32", "--output-len", "8", "--ignore-eos",
                           "--seed", "3", "--plot", str(plot))
    after = server.metrics()

    assert report["token_counter"] == "vllm_tokenize"
    assert report["model"] == "SmolLM2-135M-Instruct"
    [run] = report["runs"]
    assert run["concurrency"] == 4 and run["num_prompts"] == 8
    assert 1 <= run["max_in_flight"] <= 4
    requests = run["requests"]
    assert len(requests) == 8
    for r in requests:
        assert r["outcome"] == "ok", r
        assert r["output_tokens_source"] == "usage"
        # Prompts were fitted with the server's /tokenize; usage counts the same tokens.
        assert r["prompt_tokens"] == 32
        assert r["output_tokens"] == 8
        assert r["finish_reason"] == "length"
        assert 0 < r["ttft_s"] <= r["e2e_s"]
        assert len(r["itl_s"]) <= 7 and all(g >= 0 for g in r["itl_s"])
    s = run["summary"]
    assert (s["completed"], s["failed"], s["aborted"]) == (8, 0, 0)
    assert s["total_input_tokens"] == 8 * 32 and s["total_output_tokens"] == 8 * 8
    # The server's own counters agree with the JSON.
    assert after["ingot:prompt_tokens_total"] - before.get("ingot:prompt_tokens_total", 0) == 8 * 32
    assert after["ingot:generation_tokens_total"] - before.get("ingot:generation_tokens_total", 0) == 8 * 8
    assert after["ingot:request_success_total[length]"] - before.get("ingot:request_success_total[length]", 0) == 8
    assert s["ttft_ms"]["count"] == 8 and s["tpot_ms"]["count"] == 8
    assert abs(s["output_throughput"] - 64 / s["duration_s"]) < 1e-6 * s["output_throughput"]
    assert "Serving Benchmark Result" in stdout and "| concurrency 4 |" in stdout
    data = plot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_chat_all_at_once(server, http, tmp_path):
    report, _ = bench(server, tmp_path, "--endpoint", "chat", "--num-prompts", "3",
                      "--input-len", "16", "--output-len", "4", "--ignore-eos")
    [run] = report["runs"]
    assert run["concurrency"] is None and run["request_rate"] is None
    # The chat template's tokens come on top of the 16 content tokens: the same for every
    # request, and what /tokenize says for a 16-token message.
    template = http.post("/tokenize", json={"messages": [{"role": "user", "content": "x"}]}).json()["count"]
    one = http.post("/tokenize", json={"prompt": "x", "add_special_tokens": False}).json()["count"]
    for r in run["requests"]:
        assert r["outcome"] == "ok", r
        assert r["output_tokens"] == 4 and r["output_tokens_source"] == "usage"
        assert r["prompt_tokens"] == 16 + template - one
