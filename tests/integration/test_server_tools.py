"""Tool calling through the server's OpenAI API, on SmolLM2 (a model whose chat
template has no tool format): named and required tool choice are guided by vLLM's
structured outputs for the tool parser's format (``vllm serve``'s own flags).

Not on ``tiny``: guided JSON lets a random-weight model pad the call with whitespace
until ``max_tokens``; SmolLM2 closes it (as in the chat-model tests).
"""

import json

import openai
import pytest_asyncio

from autellix_engine import AutellixEngine, EngineConfig
from autellix_engine.server import build_app
from tests.integration.conftest import serving

GREEDY = {"temperature": 0.0}
MiB = 1 << 20


@pytest_asyncio.fixture(scope="module")
async def server():
    eng = AutellixEngine(EngineConfig(model="smollm2", max_num_seqs=2, max_model_len=2048,
                                      kv_cache_bytes=128 * MiB))
    await eng.start()
    try:
        flags = ["--enable-auto-tool-choice", "--tool-call-parser", "hermes"]
        async with serving(await build_app(eng, frontend_flags=flags)) as url:
            yield url
    finally:
        await eng.aclose()


CITY_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather of a city", "strict": True,
    "parameters": {"type": "object", "properties": {"city": {"enum": ["Paris", "Oslo"]}},
                   "required": ["city"], "additionalProperties": False}}}


async def test_tools_through_the_openai_client(server):
    """Forced tool choice: guided decoding makes the model call it (a strict tool: its
    arguments follow its schema). As OpenAI's API, a named choice finishes with
    ``stop``."""
    client = openai.AsyncOpenAI(base_url=f"{server}/v1", api_key="unused")
    forced = {"type": "function", "function": {"name": "get_weather"}}
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    chat = await client.chat.completions.create(
        model="smollm2", messages=messages, tools=[CITY_TOOL], tool_choice=forced, max_tokens=64,
        **GREEDY)
    choice = chat.choices[0]
    assert choice.finish_reason == "stop", choice
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments)["city"] in ("Paris", "Oslo")
    # The call and its result go back into the history: a second turn is accepted.
    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    again = await client.chat.completions.create(
        model="smollm2", messages=messages, tools=[CITY_TOOL], max_tokens=20, **GREEDY)
    assert again.choices[0].message.role == "assistant"
    stream = await client.chat.completions.create(
        model="smollm2", messages=messages[:1], tools=[CITY_TOOL], tool_choice=forced,
        max_tokens=64, stream=True, stream_options={"include_usage": True}, **GREEDY)
    deltas = [c async for c in stream]
    finishes = [ch.finish_reason for c in deltas for ch in c.choices if ch.finish_reason]
    assert finishes == ["stop"] and deltas[-1].usage is not None
    calls = [tc for c in deltas for ch in c.choices for tc in (ch.delta.tool_calls or [])]
    assert calls[0].function.name == "get_weather"


async def test_several_tool_calls_in_one_answer_and_ids_in_the_history(server):
    """Asked for two cities with parallel calls on, SmolLM2 answers with a list of
    calls (guided decoding allows one call or a list); each gets its own id, and the
    results go back with their tool_call_id."""
    client = openai.AsyncOpenAI(base_url=f"{server}/v1", api_key="unused")
    question = [{"role": "user", "content": "Call get_weather for Paris and for Oslo, both."}]
    reply = await client.chat.completions.create(
        model="smollm2", messages=question, tools=[CITY_TOOL], tool_choice="required",
        max_tokens=80, **GREEDY)
    calls = reply.choices[0].message.tool_calls
    assert reply.choices[0].finish_reason == "tool_calls" and calls, reply.choices[0]
    assert len({c.id for c in calls}) == len(calls)
    history = [*question, reply.choices[0].message.model_dump(exclude_none=True)]
    history += [{"role": "tool", "tool_call_id": c.id, "content": "sunny"} for c in calls]
    final = await client.chat.completions.create(model="smollm2", messages=history,
                                                 max_tokens=8, **GREEDY)
    assert final.choices[0].message.content is not None
    single = await client.chat.completions.create(
        model="smollm2", messages=question, tools=[CITY_TOOL], tool_choice="required",
        parallel_tool_calls=False, max_tokens=80, **GREEDY)
    assert len(single.choices[0].message.tool_calls or ()) == 1, single.choices[0]
