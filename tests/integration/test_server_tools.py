"""Tool calling through the server's OpenAI API, on SmolLM2 (a model whose chat
template has no tool format), with ``vllm serve``'s own flags and our envelope as the
tool parser (``--tool-call-parser autellix_envelope``): the server wraps the model's
template to describe the tools, and every tool choice (auto, required, named) is guided
to the envelope and read back as OpenAI tool calls or a plain answer, streamed or not,
in Chat Completions and the Responses API.

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
        flags = ["--tool-call-parser", "autellix_envelope"]  # implies auto tool choice
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


async def _streamed(client, **request):
    """(content deltas, tool-call deltas, finish reasons) of a streamed chat call."""
    stream = await client.chat.completions.create(model="smollm2", stream=True, **request)
    chunks = [c async for c in stream]
    choices = [ch for c in chunks for ch in c.choices]
    return ([ch.delta.content for ch in choices if ch.delta.content],
            [tc for ch in choices for tc in (ch.delta.tool_calls or [])],
            [ch.finish_reason for ch in choices if ch.finish_reason])


async def test_auto_tool_choice_calls_a_tool_then_answers_in_plain_text(server):
    """``tool_choice="auto"`` (the default with tools): the model may call or answer.
    Asked for the weather it calls the tool; given the result it answers, and the
    answer is plain text (not the envelope's JSON), streamed piece by piece."""
    client = openai.AsyncOpenAI(base_url=f"{server}/v1", api_key="unused")
    question = [{"role": "user", "content": "What is the weather in Paris? Use the tool."}]
    asked = {"messages": question, "tools": [CITY_TOOL], "max_tokens": 64, **GREEDY}
    reply = await client.chat.completions.create(model="smollm2", **asked)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and not choice.message.content, choice
    call = choice.message.tool_calls[0]
    assert (call.function.name, json.loads(call.function.arguments)) == (
        "get_weather", {"city": "Paris"})
    texts, calls, finishes = await _streamed(client, **asked)
    assert not texts and finishes == ["tool_calls"]
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("get_weather", {"city": "Paris"})]

    history = [*question, choice.message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"}]
    follow = {"messages": history, "tools": [CITY_TOOL], "max_tokens": 40, **GREEDY}
    answer = await client.chat.completions.create(model="smollm2", **follow)
    message = answer.choices[0].message
    assert answer.choices[0].finish_reason == "stop" and not message.tool_calls
    assert message.content and not message.content.lstrip().startswith("{"), message
    texts, calls, finishes = await _streamed(client, **follow)
    assert not calls and finishes == ["stop"]
    assert len(texts) > 1 and not "".join(texts).lstrip().startswith("{"), texts


async def test_responses_api_calls_a_function_tool(server):
    """The Responses API (the OpenAI Agents SDK's) under auto: a function call item."""
    client = openai.AsyncOpenAI(base_url=f"{server}/v1", api_key="unused")
    tool = {"type": "function", "name": "get_weather", "description": "Weather of a city",
            "parameters": CITY_TOOL["function"]["parameters"]}
    response = await client.responses.create(
        model="smollm2", input="What is the weather in Oslo? Use the tool.", tools=[tool],
        max_output_tokens=64, **GREEDY)
    calls = [item for item in response.output if item.type == "function_call"]
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather",
                                                                   {"city": "Oslo"})]


async def test_bad_tool_requests_are_400s_and_the_server_serves_on(server):
    """A schema the grammar cannot compile, a named tool that is not bound, an empty
    tool list: each a 400, then a tool call still works."""
    client = openai.AsyncOpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)
    messages = [{"role": "user", "content": "hi"}]
    bad_pattern = {"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"type": "string", "pattern": "("}}}}}
    for tools, choice in (([bad_pattern], "auto"), ([CITY_TOOL], {
            "type": "function", "function": {"name": "nope"}}), ([], "auto")):
        try:
            await client.chat.completions.create(model="smollm2", messages=messages,
                                                 tools=tools, tool_choice=choice, max_tokens=4)
        except openai.BadRequestError:
            continue
        raise AssertionError(f"accepted {tools} {choice}")
    reply = await client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Weather in Oslo?"}],
        tools=[CITY_TOOL], tool_choice="required", parallel_tool_calls=False, max_tokens=64,
        **GREEDY)
    assert len(reply.choices[0].message.tool_calls) == 1, reply.choices[0]


async def test_openai_agents_sdk_agent_chooses_its_tool(server):
    """An OpenAI Agents SDK agent (Responses API, streaming) under auto tool choice:
    the model chooses the tool, the SDK runs it. (``stop_on_first_tool``: given the
    result, a 135M model calls again rather than answer: plain answers after a tool
    result are checked in Chat Completions above.)"""
    import agents

    calls = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """Weather of a city."""
        calls.append(city)
        return f"Sunny in {city}"

    agents.set_tracing_disabled(True)
    client = openai.AsyncOpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)
    agent = agents.Agent(name="weather", instructions="Answer briefly.", tools=[get_weather],
                         model=agents.OpenAIResponsesModel("smollm2", client),
                         tool_use_behavior="stop_on_first_tool",
                         model_settings=agents.ModelSettings(max_tokens=48, temperature=0.0))
    result = await agents.Runner.run(agent, "What is the weather in Paris? Use the tool.",
                                     max_turns=2)
    assert calls == ["Paris"] and result.final_output == "Sunny in Paris", calls
