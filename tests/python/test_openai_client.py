"""The official `openai` package against `ingot serve`: chat and completions, streaming and
not, n, logprobs, stop strings, seeds, usage and the model list. Short max_tokens keep the
CPU time small."""

import math
import uuid

from conftest import MODEL

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


def test_models_list(client):
    models = client.models.list()
    ids = [m.id for m in models.data]
    assert ids == [MODEL]
    assert models.data[0].object == "model"
    assert client.models.retrieve(MODEL).id == MODEL


def test_chat_non_streaming(client):
    r = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=24, temperature=0)
    assert r.object == "chat.completion"
    assert r.id.startswith("chatcmpl-")
    assert len(r.choices) == 1
    c = r.choices[0]
    assert c.message.role == "assistant"
    assert "Paris" in c.message.content
    assert c.finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 0
    assert 0 < r.usage.completion_tokens <= 24
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_streaming_matches_non_streaming(client):
    args = dict(model=MODEL, messages=MESSAGES, max_tokens=16, temperature=0.8, seed=1234)
    whole = client.chat.completions.create(**args).choices[0]
    chunks = list(client.chat.completions.create(stream=True, **args))
    assert all(ch.object == "chat.completion.chunk" for ch in chunks)
    assert len({ch.id for ch in chunks}) == 1
    first = chunks[0].choices[0]
    assert first.delta.role == "assistant"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finishes == [whole.finish_reason]
    assert text == whole.message.content


def test_completions_streaming_matches_non_streaming(client):
    args = dict(model=MODEL, prompt="The three primary colors are", max_tokens=12, temperature=0.8, seed=7)
    whole = client.completions.create(**args).choices[0]
    chunks = list(client.completions.create(stream=True, **args))
    assert all(ch.object == "text_completion" for ch in chunks)
    text = "".join(ch.choices[0].text for ch in chunks if ch.choices)
    assert text == whole.text
    assert chunks[-1].choices[0].finish_reason == whole.finish_reason


def test_seeded_sampling_is_reproducible(client):
    args = dict(model=MODEL, prompt="Once upon a time", max_tokens=12, temperature=0.8, seed=42)
    a = client.completions.create(**args).choices[0].text
    b = client.completions.create(**args).choices[0].text
    assert a == b
    others = {client.completions.create(**{**args, "seed": s}).choices[0].text for s in (1, 2, 3)}
    assert len(others | {a}) > 1, "different seeds should not all give the same text"


def test_completions_n2_with_logprobs(client):
    r = client.completions.create(model=MODEL, prompt="My favourite fruit is", max_tokens=6,
                                  temperature=1.0, seed=5, n=2, logprobs=3)
    assert [c.index for c in r.choices] == [0, 1]
    texts = [c.text for c in r.choices]
    assert texts[0] != texts[1], "choice i is seeded with seed + i"
    for c in r.choices:
        lp = c.logprobs
        k = len(lp.tokens)
        assert k == 6 or c.finish_reason == "stop"
        assert len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == k
        assert "".join(lp.tokens).startswith(c.text) or c.text.startswith("".join(lp.tokens)[:len(c.text)])
        for tok, logprob, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
            assert logprob <= 0
            assert 3 <= len(top) <= 4
            assert tok in top and math.isclose(top[tok], logprob, rel_tol=1e-5, abs_tol=1e-6)
            best = sorted(top.values(), reverse=True)
            assert best[0] >= logprob
        assert lp.text_offset == sorted(lp.text_offset) and lp.text_offset[0] == 0
    assert r.usage.completion_tokens == sum(len(c.logprobs.tokens) for c in r.choices)
    assert r.usage.prompt_tokens > 0


def test_chat_logprobs_greedy_picks_the_top_token(client):
    r = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5, temperature=0,
                                       logprobs=True, top_logprobs=2)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    for entry in content:
        assert len(entry.top_logprobs) == 2
        assert entry.top_logprobs[0].logprob >= entry.top_logprobs[1].logprob
        assert entry.token == entry.top_logprobs[0].token
        assert math.isclose(entry.logprob, entry.top_logprobs[0].logprob, rel_tol=1e-6)
        assert bytes(entry.bytes).decode("utf-8", "replace") == entry.token or entry.token.startswith("bytes:")


def test_stop_strings(client):
    base = dict(model=MODEL, prompt="Count: 1, 2, 3, 4, 5,", max_tokens=16, temperature=0)
    full = client.completions.create(**base).choices[0].text
    assert " 7" in full, full
    stopped = client.completions.create(stop=[" 7"], **base).choices[0]
    assert stopped.text == full[:full.index(" 7")]
    assert stopped.finish_reason == "stop"
    kept = client.completions.create(stop=" 7", extra_body={"include_stop_str_in_output": True}, **base)
    assert kept.choices[0].text == full[:full.index(" 7") + 2]
    streamed = client.completions.create(stop=[" 7"], stream=True, **base)
    assert "".join(ch.choices[0].text for ch in streamed if ch.choices) == stopped.text


def test_usage_in_last_streamed_chunk(client):
    chunks = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=8, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert all(ch.usage is None for ch in chunks[:-1])
    generated = sum(1 for ch in chunks if ch.choices and ch.choices[0].delta.content)
    assert 0 < last.usage.completion_tokens <= 8
    assert last.usage.completion_tokens >= generated - 1
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    plain = list(client.completions.create(model=MODEL, prompt="Hi", max_tokens=4, temperature=0, stream=True,
                                           stream_options={"include_usage": True}))
    assert plain[-1].choices == [] and plain[-1].usage.completion_tokens == 4


def test_echo_with_logprobs_scores_the_prompt(client):
    prompt = "The sun rises in the"
    r = client.completions.create(model=MODEL, prompt=prompt, max_tokens=3, temperature=0, echo=True, logprobs=1)
    c = r.choices[0]
    lp = c.logprobs
    assert c.text.startswith(prompt)
    n_prompt = r.usage.prompt_tokens
    assert len(lp.tokens) == n_prompt + 3
    assert "".join(lp.tokens[:n_prompt]) == prompt
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert all(x is not None and x <= 0 for x in lp.token_logprobs[1:])
    assert lp.text_offset[0] == 0 and lp.text_offset[n_prompt] == len(prompt)
    # max_tokens=0 scores the prompt alone (what evaluation harnesses send).
    only = client.completions.create(model=MODEL, prompt=prompt, max_tokens=0, temperature=0, echo=True,
                                     logprobs=1).choices[0]
    assert only.text == prompt
    assert only.logprobs.token_logprobs == lp.token_logprobs[:n_prompt]
    # Streamed, the echo and its scores lead the first chunk.
    chunks = list(client.completions.create(model=MODEL, prompt=prompt, max_tokens=3, temperature=0, echo=True,
                                            logprobs=1, stream=True))
    assert "".join(ch.choices[0].text for ch in chunks) == c.text
    streamed = [x for ch in chunks for x in ch.choices[0].logprobs.token_logprobs]
    assert streamed == lp.token_logprobs


def test_vllm_prompt_logprobs(http):
    r = http.post("/v1/completions", json={"model": MODEL, "prompt": "Two plus two is", "max_tokens": 1,
                                           "temperature": 0, "prompt_logprobs": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    plp = body["choices"][0]["prompt_logprobs"]
    tokens = http.post("/tokenize", json={"prompt": "Two plus two is"}).json()["tokens"]
    assert len(plp) == len(tokens) and plp[0] is None
    for pos, tok in zip(plp[1:], tokens[1:]):
        assert str(tok) in pos, "the prompt's own token is always listed"
        assert 2 <= len(pos) <= 3
        ranks = sorted(v["rank"] for v in pos.values() if v["rank"] is not None)
        assert ranks[:2] == [1, 2]
    # A system message of its own keeps the prompt out of the prefix cache, whose positions the
    # engine does not score (the server then answers with a clear error instead).
    messages = [{"role": "system", "content": f"You are assistant {uuid.uuid4().hex}."},
                {"role": "user", "content": "Hi"}]
    chat = http.post("/v1/chat/completions", json={"model": MODEL, "messages": messages,
                                                   "max_tokens": 1, "prompt_logprobs": 0}).json()
    assert chat["prompt_logprobs"][0] is None
    assert len(chat["prompt_logprobs"]) == chat["usage"]["prompt_tokens"]


def test_echo_and_max_completion_tokens(client):
    r = client.completions.create(model=MODEL, prompt="Roses are red,", max_tokens=4, temperature=0, echo=True)
    assert r.choices[0].text.startswith("Roses are red,")
    r = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_completion_tokens=3, temperature=0)
    assert r.usage.completion_tokens == 3 and r.choices[0].finish_reason == "length"


def test_prefix_cache_reports_cached_tokens(client):
    long_system = "You are a helpful assistant who answers in one short sentence. " * 6
    messages = [{"role": "system", "content": long_system}, {"role": "user", "content": "Hi!"}]
    client.chat.completions.create(model=MODEL, messages=messages, max_tokens=2, temperature=0)
    again = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=2, temperature=0)
    assert again.usage.prompt_tokens_details.cached_tokens >= 16
    # A request that ends on its first token still reports its hit.
    once = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=1, temperature=0)
    assert once.usage.prompt_tokens_details.cached_tokens >= 16
