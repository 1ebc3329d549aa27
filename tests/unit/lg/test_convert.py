import json

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.utils.function_calling import convert_to_openai_tool

from autellix_lg import _convert


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def mul(a: int, b: int) -> int:
    """Multiply two numbers."""
    return a * b


TOOLS = [convert_to_openai_tool(add), convert_to_openai_tool(mul)]


def test_messages_become_role_content_dicts():
    msgs = [SystemMessage("be brief"), HumanMessage([{"type": "text", "text": "hi"}]),
            AIMessage("hello"), HumanMessage("bye")]
    assert _convert.to_chat_messages(msgs, None, None) == [
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"}, {"role": "user", "content": "bye"},
    ]


def test_tool_calls_and_results_are_rendered_in_the_envelope():
    ai = AIMessage("", tool_calls=[{"name": "add", "args": {"a": 1, "b": 2}, "id": "c1"}])
    out = _convert.to_chat_messages([HumanMessage("1+2?"), ai, ToolMessage("3", tool_call_id="c1")],
                                    None, None)
    assert json.loads(out[1]["content"]) == {"name": "add", "arguments": {"a": 1, "b": 2}}
    assert out[2] == {"role": "tool", "content": "3"}


def test_tools_are_described_in_the_system_message():
    out = _convert.to_chat_messages([SystemMessage("sys"), HumanMessage("q")], TOOLS, "auto")
    assert out[0]["role"] == "system" and out[0]["content"].startswith("sys")
    assert '"name": "add"' in out[0]["content"] and '"response"' in out[0]["content"]
    forced = _convert.to_chat_messages([HumanMessage("q")], TOOLS, "mul")
    assert '"name": "mul"' in forced[0]["content"] and '"name": "add"' not in forced[0]["content"]
    assert '"response"' not in forced[0]["content"]


def test_images_are_refused_clearly():
    with pytest.raises(ValueError, match="image_url"):
        _convert.to_chat_messages([HumanMessage([{"type": "image_url", "image_url": {}}])],
                                  None, None)


@pytest.mark.parametrize(
    ("choice", "names", "text"),
    [(None, ["add", "mul"], True), ("auto", ["add", "mul"], True), ("any", ["add", "mul"], False),
     ("required", ["add", "mul"], False), (True, ["add", "mul"], False), ("mul", ["mul"], False),
     ({"type": "function", "function": {"name": "add"}}, ["add"], False), ("none", [], True)],
)
def test_tool_choice_selects_tools(choice, names, text):
    tools, allow_text = _convert.selected_tools(TOOLS, choice)
    assert _convert.tool_names(tools) == names and allow_text is text


def test_unknown_tool_choice_is_a_clear_error():
    with pytest.raises(ValueError, match="'div'"):
        _convert.selected_tools(TOOLS, "div")


def test_output_schema_is_one_envelope_per_tool_plus_text_for_auto():
    schema = _convert.tool_output_schema(TOOLS, allow_text=True)
    assert len(schema["anyOf"]) == 3
    first = schema["anyOf"][0]
    assert first["properties"]["name"] == {"type": "string", "enum": ["add"]}
    assert first["properties"]["arguments"]["required"] == ["a", "b"]
    assert _convert.tool_output_schema(TOOLS[:1], allow_text=False)["required"] == [
        "name", "arguments"]


def test_parse_tool_output():
    text, calls = _convert.parse_tool_output('{"name": "add", "arguments": {"a": 1, "b": 2}}')
    assert text == "" and calls[0]["name"] == "add" and calls[0]["args"] == {"a": 1, "b": 2}
    assert calls[0]["id"].startswith("call_")
    assert _convert.parse_tool_output('{"response": "hi"}') == ("hi", [])
    assert _convert.parse_tool_output('{"name": "add", "argu') == ('{"name": "add", "argu', [])


def test_a_truncated_answer_envelope_yields_its_text():
    assert _convert.parse_tool_output('{\n  "response": "Paris is a ci') == ("Paris is a ci", [])
    assert _convert.parse_tool_output('{"response": "tab\\') == ("tab", [])
    assert _convert.parse_tool_output('{"response": "say \\"hi') == ('say "hi', [])
