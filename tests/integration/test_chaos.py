"""Chaos: after every hostile input, the service still serves, and nothing is left.

Property-based (hypothesis). Requests are built from the OpenAI request schemas that
``vllm serve`` validates with (vLLM's own pydantic models): a valid request with one
to three fields replaced by a value of the field's type or by a type confusion
(strings for numbers, numbers for strings, booleans as strings, floats for ints,
nulls, wrong containers). The same for the Python API's keywords
(``AutellixEngine.generate`` and ``AutellixChatModel``). After **every** input a
normal request must complete within ``NORMAL_BOUND_S``; after each battery no call is
active, the engine holds no request and no KV block.

The seed is fixed (``AUTELLIX_FUZZ_SEED``, default below) so a failure reproduces;
hypothesis prints the failing input.
"""

from __future__ import annotations

import asyncio
import json
import os

import httpx
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from autellix_engine import AutellixError
from autellix_engine.frontend.sampling import SAMPLING_KEYS
from autellix_engine.server import ServerSettings, build_app
from tests.integration.conftest import wait_until

SEED = int(os.environ.get("AUTELLIX_FUZZ_SEED", "20261205"))
EXAMPLES = int(os.environ.get("AUTELLIX_FUZZ_EXAMPLES", "60"))  # per battery
#: Seconds a normal request may take after a hostile one (a wedged engine never answers).
NORMAL_BOUND_S = 60.0
CHAOS = settings(max_examples=EXAMPLES, deadline=None, database=None, print_blob=True,
                 suppress_health_check=list(HealthCheck))

# --- type confusion, from a JSON schema ---------------------------------------------
numbers = st.one_of(st.integers(-3, 40), st.floats(-2.0, 5.0, allow_nan=False),
                    st.sampled_from([0, 1, 2**31, 2**63 - 1, -(2**63), 1e308]))
NUMERIC_TEXT = st.sampled_from(["123", "0.5", "1e3", "-1", "abc", "", " 7 ", "NaN", "0x10"])
BOOL_TEXT = st.sampled_from(["true", "false", "yes", "1", "0", "True"])
texts = st.one_of(st.text(max_size=12), NUMERIC_TEXT, BOOL_TEXT)


def _json_types(schema: dict) -> set[str]:
    kinds = set()
    for option in schema.get("anyOf", [schema]):
        kind = option.get("type")
        kinds |= set(kind) if isinstance(kind, list) else {kind} if kind else set()
        if "$ref" in option or "const" in option or "enum" in option:
            kinds.add("object" if "$ref" in option else "string")
    return kinds or {"object"}


def _same_type(kind: str) -> st.SearchStrategy:
    return {
        "integer": st.integers(-3, 40), "number": numbers, "string": texts,
        "boolean": st.booleans(), "null": st.none(),
        "array": st.lists(st.one_of(st.integers(0, 50), texts), max_size=3),
        "object": st.dictionaries(texts, st.one_of(numbers, texts), max_size=2),
    }[kind]


def _confused(kinds: set[str]) -> st.SearchStrategy:
    """Values a sloppy or hostile client sends instead of ``kinds``."""
    options = [st.none(), st.lists(numbers, max_size=2), st.dictionaries(texts, numbers,
                                                                        max_size=1)]
    if kinds & {"integer", "number"}:
        options += [NUMERIC_TEXT, st.booleans(), st.sampled_from([1.5, 2.0, -0.0, 1e20])]
    if "string" in kinds:
        options += [numbers, st.booleans()]
    if "boolean" in kinds:
        options += [BOOL_TEXT, st.sampled_from([0, 1, 2, 1.0])]
    if kinds & {"array", "object"}:
        options += [texts, numbers, st.booleans()]
    return st.one_of(options)


def field_values(schema: dict) -> st.SearchStrategy:
    kinds = _json_types(schema)
    same = [_same_type(k) for k in sorted(kinds) if k in
            ("integer", "number", "string", "boolean", "null", "array", "object")]
    return st.one_of(*same, _confused(kinds))


def _request_fields(chat: bool) -> dict[str, dict]:
    if chat:
        from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest as M
    else:
        from vllm.entrypoints.openai.completion.protocol import CompletionRequest as M
    props = dict(M.model_json_schema()["properties"])
    # Ours (program identity, priority, the srpt hint): strings and numbers.
    for name in ("program_id", "thread_id", "session_id"):
        props.setdefault(name, {"type": "string"})
    props["priority"] = {"type": "integer"}
    props["remaining_work"] = {"type": "number"}
    props.pop("model", None)  # a wrong model is a plain 404 (tested elsewhere)
    return props


def changes(chat: bool) -> st.SearchStrategy:
    props = _request_fields(chat)
    one = st.sampled_from(sorted(props)).flatmap(
        lambda name: st.tuples(st.just(name), field_values(props[name])))
    return st.lists(one, min_size=1, max_size=3).map(dict)


# --- the service ---------------------------------------------------------------------
@pytest.fixture(scope="module")
async def chaos_server(atlas):
    app = await build_app(atlas, ServerSettings(max_tokens_limit=4, program_rate_per_s=1e9))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://chaos",
                                 timeout=NORMAL_BOUND_S) as http:
        yield http


def _encode(body) -> bytes:
    return json.dumps(body, allow_nan=True).encode("utf-8", "surrogatepass")


async def _normal_request_completes(http: httpx.AsyncClient) -> None:
    response = await asyncio.wait_for(
        http.post("/v1/completions", json={"model": "tiny", "prompt": "still there?",
                                           "max_tokens": 1}),
        NORMAL_BOUND_S)
    assert response.status_code == 200, response.text[:300]


async def _nothing_left(engine) -> None:
    """No call active in the front end; no request, running or waiting call, or KV
    block held in any engine."""
    await wait_until(lambda: engine.active_calls() == 0, 30, "no active call")
    for i, state in enumerate(engine.replicas()):
        llm = engine.replica(i).llm
        await wait_until(lambda llm=llm: llm.get_num_unfinished_requests() == 0, 30,
                         "no unfinished engine request")
        await wait_until(lambda i=i: _idle(engine.replicas()[i].gauges), 30,
                         f"an idle engine holding no KV block ({state.gauges})")
    left = [p.program_id for p in engine.programs()
            if p.program_id.startswith("call-") or p.active_threads]
    assert not left, left  # one-off programs end with their call


def _idle(gauges) -> bool:
    return (gauges.running, gauges.waiting, gauges.kv_cache_usage) == (0, 0, 0.0)


@pytest.mark.parametrize("endpoint", ["/v1/chat/completions", "/v1/completions"])
async def test_after_every_hostile_request_a_normal_one_completes(chaos_server, atlas,
                                                                   endpoint):
    loop = asyncio.get_running_loop()
    chat = endpoint.endswith("chat/completions")
    base = ({"model": "tiny", "messages": [{"role": "user", "content": "hi"}]} if chat
            else {"model": "tiny", "prompt": "hi"})
    statuses: dict[int, int] = {}

    async def one(body: dict) -> None:
        response = await chaos_server.post(endpoint, content=_encode(body),
                                           headers={"content-type": "application/json"})
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, (body, response.text[:300])
        await _normal_request_completes(chaos_server)

    @seed(SEED)
    @CHAOS
    @given(fields=changes(chat))
    def battery(fields):
        body = {**base, "max_tokens": 2, **fields}
        asyncio.run_coroutine_threadsafe(one(body), loop).result(4 * NORMAL_BOUND_S)

    await asyncio.to_thread(battery)
    assert statuses.get(200) and sum(v for k, v in statuses.items() if k >= 400), statuses
    await _nothing_left(atlas)


#: One of each confusion, sent for every field in turn (the battery above samples).
EVERY_CONFUSION = ("123", "0.5", "abc", "", True, "true", 1.5, 2.0, -1, 3, None, [1],
                   {"v": 1})


@pytest.mark.parametrize("endpoint", ["/v1/chat/completions", "/v1/completions"])
async def test_every_field_with_every_confusion(chaos_server, atlas, endpoint):
    chat = endpoint.endswith("chat/completions")
    base = ({"model": "tiny", "messages": [{"role": "user", "content": "hi"}]} if chat
            else {"model": "tiny", "prompt": "hi"})
    sent, server_errors = 0, []
    for name in sorted(_request_fields(chat)):
        for value in EVERY_CONFUSION:
            body = {**base, "max_tokens": 2, name: value}
            response = await chaos_server.post(endpoint, content=_encode(body),
                                               headers={"content-type": "application/json"})
            if response.status_code >= 500:
                server_errors.append((name, value, response.text[:200]))
            await _normal_request_completes(chaos_server)
            sent += 1
    assert not server_errors, server_errors
    assert sent > 500
    await _nothing_left(atlas)


#: The Python API's keywords and the JSON kind each takes.
API_KINDS = {
    **{name: {"type": "number"} for name in SAMPLING_KEYS},
    "seed": {"type": "integer"}, "top_k": {"type": "integer"}, "min_tokens": {"type": "integer"},
    "logprobs": {"type": "integer"}, "stop": {"type": "string"},
    "stop_token_ids": {"type": "array"}, "ignore_eos": {"type": "boolean"},
    "include_stop_str_in_output": {"type": "boolean"}, "logit_bias": {"type": "object"},
    "max_tokens": {"type": "integer"}, "json_schema": {"type": "object"},
    "priority": {"type": "integer"}, "thread": {"type": "string"},
    "program_id": {"type": "string"}, "trace_context": {"type": "object"},
    "remaining_work": {"type": "number"}, "call_id": {"type": "string"},
}


def api_changes() -> st.SearchStrategy:
    one = st.sampled_from(sorted(API_KINDS)).flatmap(
        lambda name: st.tuples(st.just(name), field_values(API_KINDS[name])))
    return st.lists(one, min_size=1, max_size=3).map(dict)


async def test_after_every_hostile_python_call_a_normal_one_completes(atlas):
    from autellix_lg import AutellixChatModel

    loop = asyncio.get_running_loop()
    llm = AutellixChatModel(engine=atlas, model="tiny", max_retries=0)
    outcomes = {"ok": 0, "refused": 0}

    async def one(kwargs: dict, via_chat_model: bool) -> None:
        kwargs = {"max_tokens": 2, **kwargs}
        try:
            if via_chat_model:
                kwargs = {k: v for k, v in kwargs.items()
                          if k not in ("program_id", "thread", "call_id", "trace_context")}
                await asyncio.wait_for(llm.ainvoke("hi", **kwargs), NORMAL_BOUND_S)
            else:
                await asyncio.wait_for(atlas.generate("hi", **kwargs), NORMAL_BOUND_S)
            outcomes["ok"] += 1
        except (AutellixError, ValueError, TypeError):
            outcomes["refused"] += 1  # a clear error (InvalidRequestError is a ValueError)
        out = await asyncio.wait_for(atlas.generate("still there?", max_tokens=1),
                                     NORMAL_BOUND_S)
        assert out.usage.completion_tokens == 1

    @seed(SEED)
    @CHAOS
    @given(kwargs=api_changes(), via_chat_model=st.booleans())
    def battery(kwargs, via_chat_model):
        asyncio.run_coroutine_threadsafe(one(kwargs, via_chat_model), loop).result(
            4 * NORMAL_BOUND_S)

    await asyncio.to_thread(battery)
    assert outcomes["ok"] and outcomes["refused"], outcomes
    await _nothing_left(atlas)


async def test_the_reported_wedge_is_a_coerced_answer_and_the_next_request_works(
        chaos_server):
    """``"seed": "123"`` killed the engine core's input thread; every later request hung."""
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 4, "seed": "123"}
    first = await chaos_server.post("/v1/chat/completions", json=body)
    assert first.status_code == 200, first.text  # vllm serve reads "123" as 123
    refused = await chaos_server.post("/v1/chat/completions", json={**body, "seed": "x"})
    assert refused.status_code == 400 and "seed" in refused.json()["error"]["message"]
    await _normal_request_completes(chaos_server)


async def test_a_wrongly_typed_python_argument_is_refused_and_the_engine_serves_on(atlas):
    from autellix_lg import AutellixChatModel

    llm = AutellixChatModel(engine=atlas, model="tiny", max_tokens=4)
    with pytest.raises(ValueError, match="seed"):
        await llm.ainvoke("Hi", seed="123")
    with pytest.raises(ValueError, match="seed"):
        await asyncio.to_thread(llm.invoke, "Hi", seed="123")
    assert (await asyncio.wait_for(llm.ainvoke("Hi again"), NORMAL_BOUND_S)).content is not None
