"""Fuzzing the server: thousands of generated and mutated bodies, never a 5xx.

Property-based (hypothesis, derandomized so every run sends the same bodies): random
JSON documents, valid requests with fields replaced by random values, hostile strings
(lone surrogates, huge numbers, deep nesting), raw bytes and wrong content types, to
every endpoint, against the server over a real engine (``tiny``): every other body to
the same server with our tool envelope as its tool parser (``--tool-call-parser
autellix_envelope``), so tools, tool choices and tool-call histories also go through the
wrapped template and the parser. After the battery a normal request still succeeds on
both and the process table holds no active call.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autellix_engine.server import ServerSettings, build_app

ENDPOINTS = ("/v1/chat/completions", "/v1/completions")
FIELDS = ("model", "messages", "prompt", "max_tokens", "max_completion_tokens", "temperature",
          "top_p", "top_k", "min_p", "seed", "stop", "stop_token_ids", "ignore_eos", "n",
          "stream", "stream_options", "response_format", "tools", "tool_choice",
          "logit_bias", "logprobs", "top_logprobs", "user", "program_id", "thread_id",
          "session_id", "priority", "presence_penalty", "frequency_penalty",
          "repetition_penalty", "min_tokens", "parallel_tool_calls")
EXAMPLES = 400  # per battery below (raw_bodies sends 3 each): 2,800 requests in all
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}

surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
texts = st.one_of(st.text(max_size=20), st.text(surrogates, min_size=1, max_size=3),
                  st.sampled_from(["", "tiny", "text", "json_schema", "function", "user",
                                   "assistant", "tool", "auto", "none", "required"]))
numbers = st.one_of(st.integers(), st.integers(min_value=-(2**80), max_value=2**80),
                    st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0, 1, -1, 2**31, 2**63, 1e308, 0.5, 2]))
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, texts),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(texts, inner, max_size=4)),
    max_leaves=12)


def _valid(endpoint: str) -> dict:
    if endpoint.endswith("chat/completions"):
        return {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}
    return {"model": "tiny", "prompt": "hi"}


def _encode(body) -> bytes:
    # allow_nan: NaN and Infinity go out as the bare words a hostile client would send;
    # surrogatepass: lone surrogates go out as the raw bytes a broken client would send.
    text = json.dumps(body, allow_nan=True)
    return text.encode("utf-8", "surrogatepass")


ENVELOPE_FLAGS = ["--enable-auto-tool-choice", "--tool-call-parser", "autellix_envelope"]


@pytest.fixture(scope="module")
async def fuzz_server(atlas):
    """(plain server, server with the envelope parser) over one engine, and its loop."""
    settings = ServerSettings(max_tokens_limit=4, program_rate_per_s=1e9)
    apps = [await build_app(atlas, settings), await build_app(atlas, settings, ENVELOPE_FLAGS)]
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://fuzz", timeout=60))
            for app in apps]
        yield clients, asyncio.get_running_loop()


def _poster(fuzz_server):
    clients, loop = fuzz_server
    seen: dict[int, int] = {}
    sent = itertools.count()

    def post(endpoint: str, content: bytes, content_type: str = "application/json",
             to: int | None = None):
        """To server ``to``, else to each in turn."""
        # Hypothesis drives a synchronous function; the server runs on the engine's loop.
        http = clients[next(sent) % len(clients) if to is None else to]
        call = http.post(endpoint, content=content, headers={"content-type": content_type})
        response = asyncio.run_coroutine_threadsafe(call, loop).result(120)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert response.status_code < 500, (endpoint, content[:300], response.text[:300])
        if response.status_code >= 400:
            body = response.json()
            # A body FastAPI cannot parse is answered as FastAPI does (as in `vllm
            # serve`): {"detail": ...}.
            assert "error" in body or "detail" in body, body
        return response

    return post, seen


async def test_generated_and_mutated_bodies_never_get_a_5xx(fuzz_server, atlas):
    post, seen = _poster(fuzz_server)
    fuzz = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))

    @fuzz
    @given(endpoint=st.sampled_from(ENDPOINTS), body=json_values)
    def random_documents(endpoint, body):
        post(endpoint, _encode(body))

    @fuzz
    @given(endpoint=st.sampled_from(ENDPOINTS),
           changes=st.dictionaries(st.sampled_from(FIELDS), json_values, min_size=1,
                                   max_size=4))
    def mutated_requests(endpoint, changes):
        body = {**_valid(endpoint), "max_tokens": 1, **changes}
        if body.get("max_tokens") is None:
            body["max_tokens"] = 1  # keep the valid ones short
        post(endpoint, _encode(body))

    @fuzz
    @given(endpoint=st.sampled_from(ENDPOINTS), depth=st.integers(1, 5000),
           raw=st.binary(max_size=64),
           kind=st.sampled_from(["application/json", "text/plain", "", "application/x-www-"
                                 "form-urlencoded", "application/json; charset=utf-8"]))
    def raw_bodies(endpoint, depth, raw, kind):
        post(endpoint, b"[" * depth + b"]" * depth)
        nested = b'{"a":' * depth + b"1" + b"}" * depth
        post(endpoint, b'{"model": "tiny", "prompt": "hi", "response_format": ' + nested + b"}")
        post(endpoint, raw, kind)

    @fuzz
    @given(message=st.dictionaries(st.sampled_from(["role", "content", "tool_calls", "name",
                                                    "tool_call_id"]), json_values,
                                   max_size=4))
    def mutated_messages(message):
        body = {"model": "tiny", "max_tokens": 1,
                "messages": [{"role": "user", "content": "hi"}, message]}
        post(ENDPOINTS[0], _encode(body))

    choices = st.sampled_from(["auto", "none", "required", {
        "type": "function", "function": {"name": "get_weather"}}])

    @fuzz
    @given(choice=st.one_of(choices, choices, choices, json_values),  # mostly valid
           parallel=st.one_of(st.booleans(), st.booleans(), json_values),
           name=texts, arguments=st.one_of(texts, json_values.map(json.dumps)),
           stream=st.booleans())
    def tool_requests(choice, parallel, name, arguments, stream):
        """A bound tool and a history with an earlier call, hostile in their values, to
        the server with the envelope parser."""
        call = {"id": "c1", "type": "function",
                "function": {"name": name, "arguments": arguments}}
        body = {"model": "tiny", "max_tokens": 4, "stream": stream, "tools": [TOOL],
                "tool_choice": choice, "parallel_tool_calls": parallel,
                "messages": [{"role": "user", "content": "hi"},
                             {"role": "assistant", "content": None, "tool_calls": [call]},
                             {"role": "tool", "tool_call_id": "c1", "content": "x"}]}
        post(ENDPOINTS[0], _encode(body), to=1)  # the envelope server

    for battery in (random_documents, mutated_requests, raw_bodies, mutated_messages,
                    tool_requests):
        await asyncio.to_thread(battery)
    total = sum(seen.values())
    assert total >= 5 * EXAMPLES and seen.get(200, 0) > 0, seen
    print(f"fuzz: {total} requests, by status {dict(sorted(seen.items()))}")  # noqa: T201
    # Both still answer a normal request, and no call is left active.
    for http in fuzz_server[0]:
        ok = await http.post("/v1/completions",
                             json={"model": "tiny", "prompt": "still", "max_tokens": 2})
        assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 2
    assert all(not p.active_threads for p in atlas.programs())
