"""Tool formats of the chat model, without an engine: the native format through
vLLM's own hermes parser on the tiny model's tokenizer, the chat renderer, and the
remote client's assembly of streamed tool calls."""

import json
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from autellix_engine.core.errors import InvalidRequestError
from autellix_engine.frontend.chat_render import load_template, render_chat
from autellix_engine.frontend.models import resolve_model
from autellix_engine.frontend.results import StreamChunk
from autellix_lg.tool_formats import (
    FormatChoice,
    NativeParsed,
    openai_messages,
    openai_tool_choice,
    template_takes_tools,
)

TEMPLATE = Path(__file__).parents[2] / "data" / "hermes_tools.jinja"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather of a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}


@pytest.fixture(scope="module")
def tokenizer():
    """The tiny model's tokenizer with Hermes' tool-call tokens added, as the
    tokenizers of Hermes and Qwen 2.5 have them (the parser streams by them)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_model("tiny").path)
    tok.add_special_tokens({"additional_special_tokens": ["<tool_call>", "</tool_call>"]})
    return tok


@pytest.fixture(scope="module")
def hermes(tokenizer):
    from vllm.parser import ParserManager

    return ParserManager.get_parser(tool_parser_name="hermes", enable_auto_tools=True,
                                    tokenizer=tokenizer)


def _chunks(tokenizer, text):
    """``text`` as the engine streams it: one token per chunk."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    return [StreamChunk(tokenizer.decode([i]), (i,)) for i in ids]


def _run(fmt, tokenizer, text):
    shown = "".join(fmt.visible(c) for c in _chunks(tokenizer, text))
    return shown, fmt.finish(text, None)


def test_tool_choice_in_openai_terms():
    assert openai_tool_choice(None) == "auto"
    assert openai_tool_choice("any") == "required"
    assert openai_tool_choice(True) == "required"
    assert openai_tool_choice("none") == "none"
    assert openai_tool_choice("get_weather") == {"type": "function",
                                                 "function": {"name": "get_weather"}}


def test_auto_choice_needs_a_parser_and_a_template_with_tools():
    assert not FormatChoice("auto", None).native_for_engine("{{ tools }}")
    assert not FormatChoice("auto", "hermes").native_for_engine("{{ messages }}")
    assert FormatChoice("auto", "hermes").native_for_engine("{{ tools }}")
    assert not FormatChoice("envelope", "hermes").native_for_engine("{{ tools }}")
    assert FormatChoice("native", None).native_for_remote()
    assert not FormatChoice("auto", None).native_for_remote()
    assert template_takes_tools(load_template(str(TEMPLATE)))


def test_native_call_is_parsed_by_vllms_parser_and_streams_no_markup(tokenizer, hermes):
    fmt = NativeParsed("tiny", [HumanMessage("Weather in Paris?")], [WEATHER], "auto",
                       hermes, tokenizer)
    # auto: free text, but a call, once begun, is held to the format (vLLM's strict
    # tool calling: a structural tag)
    assert set(fmt.guided) <= {"structural_tag"}
    text = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    shown, (content, calls) = _run(fmt, tokenizer, text)
    assert "tool_call" not in shown
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("get_weather", {"city": "Paris"})]
    assert calls[0].id


def test_native_plain_answer_streams(tokenizer, hermes):
    fmt = NativeParsed("tiny", [HumanMessage("hi")], [WEATHER], "auto", hermes, tokenizer)
    shown, (content, calls) = _run(fmt, tokenizer, "Hello there, how are you?")
    assert calls == []
    assert content == "Hello there, how are you?"
    assert shown and content.startswith(shown)


def test_required_and_named_choice_are_held_to_the_native_format(tokenizer, hermes):
    """vLLM's strict tool calling (its default): a structural tag holds the output to
    the Hermes format, and the parser reads the call from it."""
    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    for choice in ("any", "get_weather"):
        fmt = NativeParsed("tiny", [HumanMessage("?")], [WEATHER], choice, hermes, tokenizer)
        tag = json.loads(fmt.guided["structural_tag"])
        assert "get_weather" in json.dumps(tag)
        _, (_, calls) = _run(fmt, tokenizer, call)
        assert [(c.name, json.loads(c.arguments)) for c in calls] == [
            ("get_weather", {"city": "Oslo"})]


def test_the_template_renders_tools_and_the_tool_history(tokenizer):
    history = openai_messages([
        HumanMessage("Weather in Paris?"),
        AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Paris"},
                                   "id": "c1"}]),
        ToolMessage("sunny", tool_call_id="c1"),
    ])
    text = render_chat(tokenizer, history, [WEATHER], load_template(str(TEMPLATE)))
    assert '"name": "get_weather"' in text  # the tool's definition
    assert '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}' in text
    assert "<tool_response>sunny</tool_response>" in text


@pytest.mark.parametrize("message", [
    {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "f", "arguments": "{not json"}}]},
    {"role": "assistant", "content": "", "tool_calls": [{"type": "function"}]},
    {"role": "user", "content": "", "tool_calls": []},
    {"role": "user"},
])
def test_bad_chat_input_is_a_clear_error(tokenizer, message):
    with pytest.raises(InvalidRequestError):
        render_chat(tokenizer, [message], None, None)


def test_bad_tools_are_a_clear_error(tokenizer):
    with pytest.raises(InvalidRequestError, match="function.name"):
        render_chat(tokenizer, [{"role": "user", "content": "hi"}], [{"type": "function"}],
                    None)


def test_remote_tool_calls_are_assembled_from_their_deltas():
    from openai.types.chat import ChatCompletionChunk

    from autellix_lg.clients import CallRequest, _ResultBuilder

    def chunk(delta, finish=None):
        return ChatCompletionChunk.model_validate({
            "id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    builder = _ResultBuilder(CallRequest([], None, "main", {}))
    builder.feed(chunk({"tool_calls": [{"index": 0, "id": "c9", "type": "function",
                                        "function": {"name": "get_weather", "arguments": ""}}]}))
    builder.feed(chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}))
    builder.feed(chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]},
                       "tool_calls"))
    result = builder.final().result
    assert [(c.id, c.name, c.arguments) for c in result.tool_calls] == [
        ("c9", "get_weather", '{"city": "Oslo"}')]
