"""The server (vLLM's own OpenAI layer over our front end), a real tiny engine, loopback.

One server for the module (vLLM's app state is built once); the official ``openai``
client on every endpoint a ``vllm serve`` user relies on, program identity, limits and
hostile input (each followed by a normal request).
"""

import asyncio
import json
from pathlib import Path
from typing import Literal

import httpx
import openai
import pytest

from autellix_engine.server import ServerSettings, build_app
from tests.integration.conftest import serving, wait_until

GREEDY = {"temperature": 0.0}
KEY = "key-a"
TOOL_TEMPLATE = Path(__file__).parents[1] / "data" / "hermes_tools.jinja"
#: A tool whose arguments are short whatever a random-weight model prefers.
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather of a city", "strict": True,
    "parameters": {"type": "object", "properties": {"city": {"enum": ["Paris", "Rome"]}},
                   "required": ["city"], "additionalProperties": False}}}


@pytest.fixture(scope="module")
async def vllm_server(atlas):
    settings = ServerSettings(api_keys=(KEY,), max_body_bytes=64 * 1024,
                              max_programs_per_key=50)
    app = await build_app(atlas, settings)
    async with serving(app) as url:
        yield url, app


@pytest.fixture(scope="module")
async def tool_url(atlas):
    """With native tool calling: a Hermes-format template and vLLM's hermes parser,
    through ``vllm serve``'s own flags."""
    flags = ["--chat-template", str(TOOL_TEMPLATE), "--enable-auto-tool-choice",
             "--tool-call-parser", "hermes"]
    app = await build_app(atlas, ServerSettings(api_keys=(KEY,)), flags)
    async with serving(app) as url:
        yield url


@pytest.fixture
def url(vllm_server):
    return vllm_server[0]


def client(url):
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)


def auth():
    return {"Authorization": f"Bearer {KEY}"}


async def normal_request_works(url):
    out = await client(url).completions.create(model="tiny", prompt="Once", max_tokens=3)
    assert out.usage.completion_tokens <= 3


async def test_chat_completions_and_models(url):
    c = client(url)
    chat = await c.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=8, **GREEDY)
    assert chat.choices[0].message.role == "assistant" and chat.usage.completion_tokens <= 8
    comp = await c.completions.create(model="tiny", prompt="Once", max_tokens=5, logprobs=2,
                                      **GREEDY)
    assert len(comp.choices[0].logprobs.tokens) == comp.usage.completion_tokens
    assert [m.id for m in (await c.models.list()).data] == ["tiny"]


async def test_streaming_chat_with_usage(url):
    stream = await client(url).chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=6,
        stream=True, stream_options={"include_usage": True}, **GREEDY)
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].usage.completion_tokens <= 6 and isinstance(text, str)


async def test_responses_api(url):
    c = client(url)
    out = await c.responses.create(model="tiny", input="Say hi", max_output_tokens=8)
    assert out.status in ("completed", "incomplete") and out.usage.output_tokens <= 8
    events = [e.type async for e in await c.responses.create(
        model="tiny", input="Say hi", max_output_tokens=8, stream=True)]
    assert events[0] == "response.created" and events[-1] in ("response.completed",
                                                               "response.incomplete")


async def test_tokenize_detokenize_version_docs(url):
    async with httpx.AsyncClient(base_url=url, headers=auth()) as http:
        tokens = (await http.post("/tokenize", json={"model": "tiny", "prompt": "hello"})).json()
        assert tokens["count"] == len(tokens["tokens"]) > 0
        text = (await http.post("/detokenize", json={"model": "tiny",
                                                     "tokens": tokens["tokens"]})).json()
        assert "hello" in text["prompt"]
        assert (await http.get("/version")).json()["version"]
        assert (await http.get("/docs")).status_code == 200
        assert (await http.get("/health")).status_code == 200
        assert (await http.get("/health/ready")).status_code == 200


async def test_session_id_makes_calls_one_program(url, atlas):
    c = client(url)
    for turn in ("hi", "and again"):
        await c.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": turn}], max_tokens=4,
            extra_headers={"X-Session-ID": "chat-1"})
    await c.completions.create(model="tiny", prompt="x", max_tokens=2,
                               extra_body={"session_id": "chat-1"})
    async with httpx.AsyncClient(base_url=url, headers=auth()) as http:
        program = (await http.get("/v1/programs/chat-1")).json()
        assert program["num_calls"] == 3 and program["service"] > 0
        await http.put("/v1/programs/agent-7")
        await c.completions.create(model="tiny", prompt="x", max_tokens=2,
                                   extra_headers={"X-Autellix-Program-Id": "agent-7"})
        assert (await http.get("/v1/programs/agent-7")).json()["num_calls"] == 1
        assert (await http.delete("/v1/programs/chat-1")).status_code == 200
        assert (await http.get("/v1/programs/chat-1")).status_code == 404
        await http.delete("/v1/programs/agent-7")
    assert atlas.active_calls() == 0


@pytest.mark.parametrize("body", [
    {"model": "tiny", "prompt": "x", "max_tokens": -1},
    {"model": "tiny", "prompt": "x", "temperature": "hot"},
    {"model": "tiny", "prompt": "x", "n": 10**9},
    {"model": "tiny", "prompt": [10**9]},
    {"model": "tiny", "prompt": "x", "priority": 2**40},
    {"model": "tiny", "prompt": "x", "session_id": "\x00bad"},
    {"model": "tiny", "prompt": "x", "logprobs": 10**6},
    {"model": "other", "prompt": "x"},
    {"prompt": 5},
    [],
])
async def test_bad_input_is_a_4xx_and_the_service_stays(url, body, atlas):
    async with httpx.AsyncClient(base_url=url, headers=auth()) as http:
        r = await http.post("/v1/completions", json=body)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    await normal_request_works(url)
    assert atlas.active_calls() == 0


async def test_values_vllm_converts_reach_the_engine_typed(url, atlas):
    """vLLM's request models convert as pydantic does ("12" -> 12): what reaches the
    engine is the typed value, and the engine is fine after it."""
    async with httpx.AsyncClient(base_url=url, headers=auth()) as http:
        r = await http.post("/v1/completions", json={"model": "tiny", "prompt": "x",
                                                     "max_tokens": "3", "session_id": ""})
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] <= 3
    assert "autellix_stats" not in r.text  # the engine's wire data stays inside
    await normal_request_works(url)
    assert atlas.active_calls() == 0


async def test_limits_keys_and_bodies(url):
    async with httpx.AsyncClient(base_url=url) as http:
        r = await http.post("/v1/completions", json={"model": "tiny", "prompt": "x"})
        assert r.status_code == 401
        r = await http.get("/v1/programs/p", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401
        r = await http.post("/v1/completions", headers=auth(),
                            json={"model": "tiny", "prompt": "x" * 70_000})
        assert r.status_code == 413
    await normal_request_works(url)


async def test_native_tools_go_through_the_template_and_vllms_parser(tool_url):
    async with httpx.AsyncClient(base_url=tool_url, headers=auth()) as http:
        rendered = (await http.post("/tokenize", json={
            "model": "tiny", "messages": [{"role": "user", "content": "weather?"}],
            "tools": [WEATHER], "return_token_strs": True})).json()
    assert "get_weather" in "".join(rendered["token_strs"])  # the template saw the tools
    c = client(tool_url)
    named = await c.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=64, **GREEDY)
    assert named.choices[0].message.tool_calls, repr(named.choices[0].message.content)
    call = named.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments)["city"] in ("Paris", "Rome")
    required = await c.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Weather?"}], tools=[WEATHER],
        tool_choice="required", parallel_tool_calls=False, max_tokens=64, **GREEDY)
    assert required.choices[0].message.tool_calls, repr(required.choices[0])
    assert required.choices[0].message.tool_calls[0].function.name == "get_weather"


async def test_auto_tool_choice_streams_text(tool_url):
    """With ``tool_choice="auto"`` a plain answer streams as it is generated."""
    stream = await client(tool_url).chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hi"}], tools=[WEATHER],
        tool_choice="auto", max_tokens=12, stream=True, **GREEDY)
    deltas = [c.choices[0].delta async for c in stream if c.choices]
    content = [d.content for d in deltas if d.content]
    calls = [d.tool_calls for d in deltas if d.tool_calls]
    assert len(content) > 1 or calls  # a random model: text in pieces, or a tool call


async def test_openai_agents_sdk_runs_an_agent_with_a_tool(tool_url, atlas):
    """The OpenAI Agents SDK (Responses API, streaming): the model's call of the tool
    (forced: a random-weight model would not choose it), the SDK runs it, and its
    answer is the agent's (``stop_on_first_tool``: such a model never stops talking)."""
    import agents

    calls = []

    @agents.function_tool
    def get_weather(city: Literal["Paris", "Rome"]) -> str:
        """Weather of a city."""
        calls.append(city)
        return f"Sunny in {city}"

    agents.set_tracing_disabled(True)
    model = agents.OpenAIResponsesModel("tiny", client(tool_url))
    agent = agents.Agent(name="weather", instructions="Answer briefly.", tools=[get_weather],
                         model=model, tool_use_behavior="stop_on_first_tool",
                         model_settings=agents.ModelSettings(
                             tool_choice="get_weather", max_tokens=48, temperature=0.0))
    result = await agents.Runner.run(agent, "Weather in Paris?", max_turns=3)
    assert calls in (["Paris"], ["Rome"]) and result.final_output == f"Sunny in {calls[0]}"
    assert atlas.active_calls() == 0


async def test_langchain_clients_on_vllms_layer(url, atlas):
    """``AutellixChatModel(base_url=...)`` (its program ends with its run) and
    ``ChatOpenAI(use_responses_api=True)`` against vLLM's layer."""
    from langchain_core.runnables import RunnableLambda
    from langchain_openai import ChatOpenAI

    from autellix_lg import PROGRAM_ID_KEY, AutellixChatModel

    llm = AutellixChatModel(base_url=url, api_key=KEY, model="tiny", max_tokens=4)
    two_calls = RunnableLambda(lambda q: [llm.invoke(q).content, llm.invoke(q).content])
    answers = await asyncio.to_thread(two_calls.invoke, "hi",
                                      {"metadata": {PROGRAM_ID_KEY: "lc-1"}})
    assert len(answers) == 2
    pid = f"{_scope()}/lc-1"
    await wait_until(lambda: not atlas.is_program_running(pid), 30,
                     "the program ends with its run (sent in the background)")
    assert atlas.program_stats(pid).tally.calls == 2
    responses = ChatOpenAI(base_url=f"{url}/v1", api_key=KEY, model="tiny", max_tokens=8,
                           use_responses_api=True, max_retries=0)
    out = await responses.ainvoke("Say hi")
    assert out.usage_metadata["output_tokens"] <= 8


def _scope():
    import hashlib

    return hashlib.sha256(KEY.encode()).hexdigest()[:12]


async def test_a_key_over_its_program_cap_gets_429_and_ending_one_frees_it(atlas):
    # Its own key: the shared engine holds other tests' programs of other scopes.
    app = await build_app(atlas, ServerSettings(api_keys=("cap-key",),
                                                max_programs_per_key=1))
    async with serving(app) as url:
        c = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="cap-key", max_retries=0)
        await c.completions.create(model="tiny", prompt="x", max_tokens=1,
                                   extra_body={"session_id": "cap-1"})
        with pytest.raises(openai.RateLimitError):
            await c.completions.create(model="tiny", prompt="x", max_tokens=1,
                                       extra_body={"session_id": "cap-2"})
        cap = {"Authorization": "Bearer cap-key"}
        async with httpx.AsyncClient(base_url=url, headers=cap) as http:
            assert (await http.delete("/v1/programs/cap-1")).status_code == 200
        await c.completions.create(model="tiny", prompt="x", max_tokens=1,
                                   extra_body={"session_id": "cap-2"})
        async with httpx.AsyncClient(base_url=url, headers=cap) as http:
            await http.delete("/v1/programs/cap-2")
        assert atlas.active_calls() == 0


async def test_a_call_is_a_server_span_in_the_callers_trace(vllm_server, span_exporter):
    """A child of the caller's ``traceparent``, with the GenAI attributes and the
    scheduler's record."""
    url, _ = vllm_server
    trace_id, parent = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    span_exporter.clear()
    async with httpx.AsyncClient(base_url=url, headers=auth()) as http:
        response = await http.post("/v1/chat/completions", headers={
            "traceparent": f"00-{trace_id}-{parent}-01", "X-Session-ID": "traced"}, json={
            "model": "tiny", "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 3, "temperature": 0.0})
    assert response.status_code == 200, response.text
    await wait_until(lambda: any(s.name == "POST /v1/chat/completions"
                                 for s in span_exporter.get_finished_spans()), 10, "span")
    span = next(s for s in span_exporter.get_finished_spans()
                if s.name == "POST /v1/chat/completions")
    assert f"{span.context.trace_id:032x}" == trace_id
    assert f"{span.parent.span_id:016x}" == parent
    attrs = span.attributes
    assert attrs["gen_ai.operation.name"] == "chat" and attrs["autellix.policy"] == "atlas"
    assert attrs["gen_ai.usage.output_tokens"] == 3
    assert attrs["autellix.program.id"].endswith("/traced")
    assert attrs["http.response.status_code"] == 200
