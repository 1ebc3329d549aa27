"""Fuzzing the server: thousands of generated and mutated bodies, never a 5xx.

Property-based (hypothesis, derandomized so every run sends the same bodies): random
JSON documents, valid requests with fields replaced by random values, hostile strings
(lone surrogates, huge numbers, deep nesting), raw bytes and wrong content types, to
every endpoint, against the server over a real engine (``tiny``). After the battery a
normal request still succeeds and the process table holds no active call.
"""

from __future__ import annotations

import asyncio
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
EXAMPLES = 400  # per battery below (raw_bodies sends 3 each): 2,400 requests in all

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


@pytest.fixture(scope="module")
async def fuzz_server(atlas):
    app = await build_app(atlas, ServerSettings(max_tokens_limit=4, program_rate_per_s=1e9))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://fuzz",
                                 timeout=60) as http:
        yield http, asyncio.get_running_loop()


def _poster(fuzz_server):
    http, loop = fuzz_server
    seen: dict[int, int] = {}

    def post(endpoint: str, content: bytes, content_type: str = "application/json"):
        # Hypothesis drives a synchronous function; the server runs on the engine's loop.
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

    for battery in (random_documents, mutated_requests, raw_bodies, mutated_messages):
        await asyncio.to_thread(battery)
    total = sum(seen.values())
    assert total >= 4 * EXAMPLES and seen.get(200, 0) > 0, seen
    print(f"fuzz: {total} requests, by status {dict(sorted(seen.items()))}")  # noqa: T201
    # The server still answers a normal request, and no call is left active.
    ok = await fuzz_server[0].post("/v1/completions",
                                   json={"model": "tiny", "prompt": "still", "max_tokens": 2})
    assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 2
    assert all(not p.active_threads for p in atlas.programs())
