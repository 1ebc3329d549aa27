"""Native tool calling through ``AutellixChatModel`` on the embedded engine: the
tools and the tool history rendered by a Hermes-format chat template, the calls read
by vLLM's hermes parser, named / required choice held to the format by vLLM's
structural tag (the tiny model is random: only the guided cases decide its output)."""

import asyncio
import json
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool

from autellix_engine import InvalidRequestError
from autellix_lg import AutellixChatModel

TEMPLATE = str(Path(__file__).parents[1] / "data" / "hermes_tools.jinja")
#: A tool whose arguments are short whatever a random-weight model prefers.
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather of a city", "strict": True,
    "parameters": {"type": "object", "properties": {"city": {"enum": ["Paris", "Rome"]}},
                   "required": ["city"], "additionalProperties": False}}}


@pytest.fixture
def llm(atlas):
    return AutellixChatModel(engine=atlas, chat_template=TEMPLATE, tool_parser="hermes",
                             temperature=0.0, max_tokens=40)


def _city(message: AIMessage) -> str:
    assert message.tool_calls, repr(message)
    call = message.tool_calls[0]
    assert call["name"] == "get_weather"
    return call["args"]["city"]


async def test_named_tool_choice_calls_the_tool_in_the_native_format(llm):
    bound = llm.bind_tools([WEATHER], tool_choice="get_weather")
    message = await bound.ainvoke("Weather in Paris?")
    assert _city(message) in ("Paris", "Rome")
    assert message.response_metadata["finish_reason"] == "tool_calls"


async def test_required_choice_streams_no_text_and_ends_with_the_call(llm):
    bound = llm.bind_tools([WEATHER], tool_choice="any")
    chunks = [c async for c in bound.astream("Weather?")]
    assert all(not c.content for c in chunks)  # the call's markup is not an answer
    total = chunks[0]
    for c in chunks[1:]:
        total += c
    assert _city(total) in ("Paris", "Rome")


async def test_sync_and_tool_history_render_through_the_template(llm):
    """A tool round trip, from synchronous code (a thread: the engine's loop is the
    test's): the call and its result go back to the model in the template's format."""
    named = llm.bind_tools([WEATHER], tool_choice="get_weather")
    call = await asyncio.to_thread(named.invoke, "Weather in Rome?")
    result = ToolMessage(json.dumps({"sky": "clear"}), tool_call_id=call.tool_calls[0]["id"])
    history = [HumanMessage("Weather in Rome?"), call, result]
    answer = await asyncio.to_thread(llm.bind_tools([WEATHER]).invoke, history)
    assert answer.response_metadata["finish_reason"] in ("stop", "length", "tool_calls")
    assert answer.usage_metadata["input_tokens"] > 0


async def test_a_graph_runs_a_native_tool_and_answers(llm):
    from langgraph.graph import END, START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode

    @tool
    def get_weather(city: str) -> str:
        """Weather of a city."""
        return f"clear in {city}"

    caller = llm.bind_tools([WEATHER], tool_choice="get_weather")
    answerer = llm.bind_tools([WEATHER], tool_choice="none")
    graph = StateGraph(MessagesState)
    async def call(state):
        return {"messages": [await caller.ainvoke(state["messages"])]}

    async def answer(state):
        return {"messages": [await answerer.ainvoke(state["messages"])]}

    graph.add_node("call", call)
    graph.add_node("tools", ToolNode([get_weather]))
    graph.add_node("answer", answer)
    graph.add_edge(START, "call")
    graph.add_edge("call", "tools")
    graph.add_edge("tools", "answer")
    graph.add_edge("answer", END)
    out = await graph.compile().ainvoke({"messages": [HumanMessage("Weather in Paris?")]})
    kinds = [type(m).__name__ for m in out["messages"]]
    assert kinds == ["HumanMessage", "AIMessage", "ToolMessage", "AIMessage"]
    assert out["messages"][2].content.startswith("clear in ")


async def test_auto_choice_streams_a_plain_answer(llm):
    chunks = [c async for c in llm.bind_tools([WEATHER]).astream("Say hello.")]
    total = chunks[0]
    for c in chunks[1:]:
        total += c
    if not total.tool_calls:  # a random model: usually text, which streams
        assert sum(1 for c in chunks if c.content) > 1


async def test_hostile_guided_and_tool_inputs_are_refused_and_the_engine_serves_on(atlas):
    hi = [{"role": "user", "content": "hi"}]
    bad = [
        dict(prompt=hi, structural_tag="{not json"),
        dict(prompt=hi, structural_tag="\ud800"),
        dict(prompt=hi, json_schema={"type": "object"}, structural_tag="{}"),
        dict(prompt="plain text", tools=[WEATHER]),
        dict(prompt=hi, tools=[{"type": "function"}]),
        dict(prompt=hi, tools="get_weather"),
        dict(prompt=hi, chat_template=7),
        dict(prompt=[{"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "f", "arguments": "{oops"}}]}]),
    ]
    for kwargs in bad:
        with pytest.raises(InvalidRequestError):
            async for _ in atlas.stream(max_tokens=4, **kwargs):
                pass
        assert not atlas.active_calls()
        text = [c.text async for c in atlas.stream("ok", max_tokens=2)]
        assert text, kwargs


def test_native_without_a_parser_or_template_is_a_clear_error(atlas):
    with pytest.raises(ValueError, match="tool_parser"):
        AutellixChatModel(engine=atlas, tool_format="native")
    plain = AutellixChatModel(engine=atlas, tool_format="native", tool_parser="hermes",
                              chat_template="{{ messages[0]['content'] }}", max_tokens=4)
    with pytest.raises(ValueError, match="does not render tools"):
        plain.bind_tools([WEATHER]).invoke("hi")
