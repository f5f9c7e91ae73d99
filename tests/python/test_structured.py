"""Structured output and tool calling through the official `openai` client (and raw HTTP for
vLLM's extra fields) against `ingot serve` on the default model: every request form on both
endpoints, streaming and not, n > 1, seeded sampled requests that must all be valid for their
schema, constrained and unconstrained requests batched together, 400s for invalid schemas,
regexes and grammars, `length` when tokens run out, and tool calls (required, named, auto,
none, streamed, and tool results rendered back)."""

import json
import re
from concurrent.futures import ThreadPoolExecutor
from typing import List, Literal

import pydantic
import pytest

from conftest import MODEL


class City(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    name: str = pydantic.Field(max_length=24)
    country: str = pydantic.Field(max_length=24)
    population: int = pydantic.Field(ge=0, le=50_000_000)
    coastal: bool
    tags: List[Literal["capital", "port", "old", "big"]] = pydantic.Field(max_length=3)


CITY_SCHEMA = City.model_json_schema()
ASK = [{"role": "user", "content": "Describe Paris as JSON."}]


def schema_format(schema=CITY_SCHEMA, name="city"):
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


def test_parse_with_a_pydantic_model(client):
    r = client.chat.completions.parse(model=MODEL, messages=ASK, response_format=City,
                                      max_tokens=120, temperature=0)
    c = r.choices[0]
    assert c.finish_reason == "stop", c.message.content
    assert isinstance(c.message.parsed, City)
    assert City.model_validate_json(c.message.content) == c.message.parsed


def test_seeded_sampled_outputs_are_all_valid(client):
    """Many sampled requests (temperature > 0, seeds), n > 1: every finished output is valid."""
    def one(seed):
        return client.chat.completions.create(
            model=MODEL, messages=ASK, response_format=schema_format(), max_tokens=160,
            temperature=1.0, top_p=0.95, seed=seed, n=2)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(16)))
    outputs = [c for r in results for c in r.choices]
    assert len(outputs) == 32
    for c in outputs:
        assert c.finish_reason == "stop", c.message.content
        City.model_validate_json(c.message.content)
    # Sampling still samples: the outputs are not all one string.
    assert len({c.message.content for c in outputs}) > 4


def test_json_object(client):
    r = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=100, temperature=0,
                                       response_format={"type": "json_object"})
    c = r.choices[0]
    if c.finish_reason == "stop":
        assert isinstance(json.loads(c.message.content), dict)
    else:
        assert c.finish_reason == "length"
        assert c.message.content.startswith("{")


def test_completions_forms(client):
    base = dict(model=MODEL, prompt="My phone number is", max_tokens=20, temperature=0.7, seed=3)
    r = client.completions.create(**base, extra_body={"structured_outputs": {"regex": r"[0-9]{3}-[0-9]{4}"}})
    assert re.fullmatch(r"[0-9]{3}-[0-9]{4}", r.choices[0].text), r.choices[0].text
    assert r.choices[0].finish_reason == "stop"
    r = client.completions.create(**base, extra_body={"guided_regex": r"\([0-9]{3}\) [0-9]{4}"})
    assert re.fullmatch(r"\([0-9]{3}\) [0-9]{4}", r.choices[0].text)
    r = client.completions.create(**base, n=3, extra_body={"guided_choice": ["yes", "no", "maybe"]})
    assert all(c.text in ("yes", "no", "maybe") for c in r.choices)
    r = client.completions.create(**base, extra_body={"structured_outputs": {"choice": ["alpha", "beta"]}})
    assert r.choices[0].text in ("alpha", "beta")
    grammar = 'start: color " and " color\ncolor: "red" | "green" | "blue"'
    for body in ({"guided_grammar": grammar}, {"structured_outputs": {"grammar": grammar}}):
        r = client.completions.create(**base, extra_body=body)
        assert re.fullmatch(r"(red|green|blue) and (red|green|blue)", r.choices[0].text)
    schema = {"type": "object", "properties": {"digits": {"type": "integer", "minimum": 0, "maximum": 999}},
              "required": ["digits"],
              "additionalProperties": False}
    for body in ({"guided_json": schema}, {"structured_outputs": {"json": schema}},
                 {"response_format": schema_format(schema, "d")}):
        r = client.completions.create(**{**base, "max_tokens": 30}, extra_body=body)
        assert r.choices[0].finish_reason == "stop"
        assert set(json.loads(r.choices[0].text)) == {"digits"}


def test_chat_vllm_forms(client):
    r = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Is Paris in France?"}], max_tokens=5,
        temperature=0, extra_body={"guided_choice": ["Yes", "No"]})
    assert r.choices[0].message.content in ("Yes", "No")
    r = client.chat.completions.create(
        model=MODEL, messages=ASK, max_tokens=120, temperature=0,
        extra_body={"structured_outputs": {"json": CITY_SCHEMA}})
    City.model_validate_json(r.choices[0].message.content)


def test_streaming_matches_non_streaming(client):
    args = dict(model=MODEL, messages=ASK, max_tokens=120, temperature=0.8, seed=11,
                response_format=schema_format())
    whole = client.chat.completions.create(**args).choices[0]
    chunks = list(client.chat.completions.create(stream=True, **args))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == whole.message.content
    City.model_validate_json(text)
    args = dict(model=MODEL, prompt="Pick:", max_tokens=10, temperature=0.9, seed=5, n=2,
                extra_body={"guided_choice": ["one", "two", "three"]})
    whole = client.completions.create(**args)
    texts = ["", ""]
    for ch in client.completions.create(stream=True, **args):
        for c in ch.choices:
            texts[c.index] += c.text
    assert texts == [c.text for c in sorted(whole.choices, key=lambda c: c.index)]


def test_running_out_of_tokens_is_length(client):
    r = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=4, temperature=0,
                                       response_format=schema_format())
    c = r.choices[0]
    assert c.finish_reason == "length"
    assert r.usage.completion_tokens == 4
    with pytest.raises(pydantic.ValidationError):
        City.model_validate_json(c.message.content)


@pytest.mark.parametrize("body, needle", [
    ({"response_format": {"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "object", "properties": {"a": {"type": "frobnicate"}}}}}},
     "frobnicate"),
    ({"guided_regex": "a(b"}, "regex"),
    ({"structured_outputs": {"grammar": "start: ( \"a\""}}, "grammar"),
    ({"guided_json": "{not json"}, "JSON"),
])
def test_invalid_constraints_are_400s(http, body, needle):
    r = http.post("/v1/chat/completions", json={"model": MODEL, "messages": ASK, "max_tokens": 5, **body})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error"
    assert needle.lower() in err["message"].lower(), err["message"]
    r = http.post("/v1/completions", json={"model": MODEL, "prompt": "x", "max_tokens": 5, **body})
    assert r.status_code == 400, r.text


def test_constrained_and_unconstrained_batch_is_invariant(client):
    """Greedy requests give the same tokens alone and batched with constrained ones."""
    plain = [dict(model=MODEL, prompt=p, max_tokens=16, temperature=0)
             for p in ("The sky is", "Rust is a language that", "Once upon a time")]
    constrained = [dict(model=MODEL, prompt=p, max_tokens=60, temperature=0,
                        extra_body={"guided_json": CITY_SCHEMA})
                   for p in ("A city:", "Describe Rome:", "JSON please:")]
    alone = [client.completions.create(**a).choices[0].text for a in plain + constrained]
    with ThreadPoolExecutor(6) as pool:
        together = list(pool.map(lambda a: client.completions.create(**a).choices[0].text,
                                 (plain + constrained) * 2))
    assert together == alone * 2


WEATHER = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "maxLength": 20},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"], "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": "get_time", "description": "Current time in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                       "required": ["city"], "additionalProperties": False}}}]
WEATHER_Q = [{"role": "user", "content": "What is the weather in Paris?"}]


def check_call(call):
    assert call.type == "function"
    assert call.id.startswith("call")
    args = json.loads(call.function.arguments)
    if call.function.name == "get_weather":
        assert set(args) == {"city", "unit"} and args["unit"] in ("celsius", "fahrenheit")
    else:
        assert call.function.name == "get_time" and set(args) == {"city"}


def test_tool_choice_required(client):
    # One call each (parallel_tool_calls false): sampled, every call valid for its schema.
    for seed in range(4):
        r = client.chat.completions.create(model=MODEL, messages=WEATHER_Q, tools=WEATHER,
                                           tool_choice="required", parallel_tool_calls=False,
                                           max_tokens=120, temperature=0.9, seed=seed)
        c = r.choices[0]
        assert c.finish_reason == "tool_calls", c.message
        assert c.message.content is None and len(c.message.tool_calls) == 1
        check_call(c.message.tool_calls[0])
    # Parallel calls allowed: one or more, or the budget ran out mid-list.
    r = client.chat.completions.create(model=MODEL, messages=WEATHER_Q, tools=WEATHER,
                                       tool_choice="required", max_tokens=200, temperature=0)
    c = r.choices[0]
    if c.finish_reason == "tool_calls":
        assert len(c.message.tool_calls) >= 1
        for call in c.message.tool_calls:
            check_call(call)
    else:
        assert c.finish_reason == "length" and c.message.content.startswith("[")


def test_tool_choice_named(client):
    r = client.chat.completions.create(
        model=MODEL, messages=WEATHER_Q, tools=WEATHER, max_tokens=80, temperature=0,
        tool_choice={"type": "function", "function": {"name": "get_time"}})
    c = r.choices[0]
    assert c.finish_reason == "tool_calls"
    assert [t.function.name for t in c.message.tool_calls] == ["get_time"]
    check_call(c.message.tool_calls[0])


def test_tool_choice_none_and_auto(client):
    r = client.chat.completions.create(model=MODEL, messages=WEATHER_Q, tools=WEATHER,
                                       tool_choice="none", max_tokens=20, temperature=0)
    c = r.choices[0]
    assert not c.message.tool_calls and c.message.content and c.finish_reason in ("stop", "length")
    # auto: whatever the model writes is either content or well-formed calls.
    for seed in range(3):
        r = client.chat.completions.create(model=MODEL, messages=WEATHER_Q, tools=WEATHER,
                                           max_tokens=80, temperature=0.8, seed=seed)
        c = r.choices[0]
        if c.message.tool_calls:
            assert c.finish_reason == "tool_calls"
            for call in c.message.tool_calls:
                assert call.function.name in ("get_weather", "get_time")
                json.loads(call.function.arguments)
        else:
            assert c.message.content is not None


def stream_calls(client, **args):
    """Streams a chat completion; per choice: its content, its calls as {index: {id, name,
    fragments}} checked against the streaming contract (the first delta of a call carries
    its id, type, name and empty arguments; later ones only its index and argument text),
    and its finish reason."""
    out = {}
    for ch in client.chat.completions.create(stream=True, **args):
        for c in ch.choices:
            o = out.setdefault(c.index, {"content": "", "calls": {}, "finish": None})
            o["content"] += c.delta.content or ""
            for tc in c.delta.tool_calls or []:
                if tc.index not in o["calls"]:
                    assert tc.id and tc.id.startswith("call") and tc.type == "function", tc
                    assert tc.function.name and tc.function.arguments == "", tc
                    assert tc.index == len(o["calls"]), "calls begin in index order"
                    o["calls"][tc.index] = {"id": tc.id, "name": tc.function.name, "fragments": []}
                else:
                    assert tc.id is None and tc.function.name is None, tc
                    o["calls"][tc.index]["fragments"].append(tc.function.arguments)
            if c.finish_reason:
                o["finish"] = c.finish_reason
    return out


def check_streamed(streamed, whole):
    """The streamed choice has the non-streamed choice's calls: names, and fragments that
    concatenate to exactly its arguments (which parse); a long argument came in pieces."""
    assert streamed["finish"] == whole.finish_reason
    calls = whole.message.tool_calls or []
    assert sorted(streamed["calls"]) == list(range(len(calls)))
    for i, call in enumerate(calls):
        s = streamed["calls"][i]
        assert s["name"] == call.function.name
        assert "".join(s["fragments"]) == call.function.arguments
        json.loads(call.function.arguments)
        assert len(s["fragments"]) > 1, s["fragments"]
        check_call(call)
    # Markup never reaches the content.
    for marker in ("<tool_call>", "</tool_call>", "[TOOL_CALLS]", "<|python_tag|>"):
        assert marker not in streamed["content"]


def test_streamed_tool_arguments_required_and_named(client):
    # required, n = 2 choices with their own indices.
    args = dict(model=MODEL, messages=WEATHER_Q, tools=WEATHER, tool_choice="required",
                parallel_tool_calls=False, max_tokens=160, temperature=0.9, seed=2, n=2)
    whole = client.chat.completions.create(**args)
    streamed = stream_calls(client, **args)
    for choice in whole.choices:
        assert choice.finish_reason == "tool_calls"
        check_streamed(streamed[choice.index], choice)
    # A named function.
    args = dict(model=MODEL, messages=WEATHER_Q, tools=WEATHER, max_tokens=80, temperature=0,
                tool_choice={"type": "function", "function": {"name": "get_weather"}})
    whole = client.chat.completions.create(**args).choices[0]
    check_streamed(stream_calls(client, **args)[0], whole)


def test_two_parallel_calls_stream_with_their_indices(client):
    """`required` with parallel calls: seeds until one answer holds two calls (seeded
    sampling is deterministic, so this is the same seed every run)."""
    ask = [{"role": "user", "content": "What is the weather in Paris and the time in Tokyo?"}]
    found = 0
    for seed in range(12):
        args = dict(model=MODEL, messages=ask, tools=WEATHER, tool_choice="required",
                    max_tokens=200, temperature=1.0, seed=seed)
        whole = client.chat.completions.create(**args).choices[0]
        if whole.finish_reason != "tool_calls" or len(whole.message.tool_calls) < 2:
            continue
        check_streamed(stream_calls(client, **args)[0], whole)
        found += 1
        if found == 2:
            break
    assert found >= 1, "no seed gave two parallel calls"


@pytest.mark.parametrize("parser", ["hermes", "llama3_json", "mistral"])
def test_streamed_tool_arguments_in_every_format(start_server, parser):
    """Each `--tool-call-parser`: required and named calls stream their arguments; `auto`
    streams content or calls, and what it streams matches the non-streamed answer."""
    import openai
    s = start_server("--tool-call-parser", parser)
    c = openai.OpenAI(base_url=s.url + "/v1", api_key="none", max_retries=0, timeout=120)
    for choice in ("required", {"type": "function", "function": {"name": "get_time"}}):
        args = dict(model=MODEL, messages=WEATHER_Q, tools=WEATHER, tool_choice=choice,
                    max_tokens=120, temperature=0.8, seed=4)
        whole = c.chat.completions.create(**args).choices[0]
        assert whole.finish_reason == "tool_calls", whole.message
        check_streamed(stream_calls(c, **args)[0], whole)
    for seed in range(3):
        args = dict(model=MODEL, messages=WEATHER_Q, tools=WEATHER, max_tokens=60,
                    temperature=0.8, seed=seed)
        whole = c.chat.completions.create(**args).choices[0]
        streamed = stream_calls(c, **args)[0]
        assert streamed["finish"] == whole.finish_reason
        if whole.message.tool_calls:
            check_streamed(streamed, whole)
        else:
            assert streamed["content"] == whole.message.content


def test_tool_results_render_back(client, http):
    first = client.chat.completions.create(model=MODEL, messages=WEATHER_Q, tools=WEATHER,
                                           tool_choice={"type": "function", "function": {"name": "get_weather"}},
                                           max_tokens=80, temperature=0)
    call = first.choices[0].message.tool_calls[0]
    messages = WEATHER_Q + [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "18 degrees and sunny"},
    ]
    r = client.chat.completions.create(model=MODEL, messages=messages, tools=WEATHER,
                                       max_tokens=30, temperature=0)
    assert r.choices[0].finish_reason in ("stop", "length", "tool_calls")
    # The prompt holds the earlier call and the result, in the Hermes format.
    toks = http.post("/tokenize", json={"model": MODEL, "messages": messages}).json()["tokens"]
    text = http.post("/detokenize", json={"model": MODEL, "tokens": toks}).json()["prompt"]
    assert "<tool_call>" in text and '"get_weather"' in text
    assert "<tool_response>\n18 degrees and sunny\n</tool_response>" in text


def test_bad_tool_requests_are_400s(http):
    for body, param in [
        ({"tools": WEATHER, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": WEATHER, "tool_choice": "required", "response_format": {"type": "json_object"}},
         "tool_choice"),
    ]:
        r = http.post("/v1/chat/completions",
                      json={"model": MODEL, "messages": WEATHER_Q, "max_tokens": 5, **body})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == param
