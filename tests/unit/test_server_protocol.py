"""The server's OpenAI wire handling for tools (pure; no engine)."""

import json

import pytest

from autellix_engine.server import protocol
from autellix_engine.server.protocol import RequestError

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object",
                                          "properties": {"city": {"type": "string"}}}}}
USER = [{"role": "user", "content": "Weather in Paris?"}]


def parse(**body):
    return protocol.parse_request({"messages": USER, **body}, chat=True, model="tiny",
                                  max_tokens_limit=4096)


def test_tools_become_a_system_note_and_a_guided_schema():
    req = parse(tools=[WEATHER])
    assert req.tool_mode
    assert req.prompt[0]["role"] == "system" and "get_weather" in req.prompt[0]["content"]
    schema = req.params["json_schema"]
    assert {"name", "arguments"} <= set(schema["anyOf"][0]["properties"])  # auto: call or answer
    forced = parse(tools=[WEATHER], tool_choice={"type": "function",
                                                 "function": {"name": "get_weather"}})
    assert forced.params["json_schema"]["properties"]["name"]["enum"] == ["get_weather"]
    assert not parse(tools=[WEATHER], tool_choice="none").tool_mode


def test_earlier_tool_calls_are_rendered_back_as_envelopes():
    history = USER + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    req = protocol.parse_request({"messages": history, "tools": [WEATHER]}, chat=True,
                                 model="tiny", max_tokens_limit=4096)
    assistant = [m for m in req.prompt if m["role"] == "assistant"][0]
    assert json.loads(assistant["content"]) == {"name": "get_weather",
                                                "arguments": {"city": "Paris"}}
    assert req.prompt[-1] == {"role": "tool", "content": "sunny"}


@pytest.mark.parametrize("body, param", [
    ({"tools": "x"}, "tools"),
    ({"tools": [{"type": "function"}]}, "tools"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": 3}}]}, "tools"),
    ({"tools": [WEATHER], "tool_choice": "other"}, "tool_choice"),
    ({"tools": [WEATHER], "response_format": {"type": "json_object"}}, "tools"),
    ({"messages": USER + [{"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
        "function": {"name": "f", "arguments": "{bad"}}]}]}, None),
    ({"messages": USER + [{"role": "assistant", "tool_calls": [{"function": {
        "name": "f", "arguments": "{}"}}]}]}, "messages"),  # no id: vLLM's model refuses
])
def test_bad_tool_requests_are_400s(body, param):
    with pytest.raises(RequestError) as err:
        protocol.parse_request({"messages": USER, **body}, chat=True, model="tiny",
                               max_tokens_limit=4096)
    assert err.value.status == 400 and err.value.param == param


def test_tool_outputs_become_openai_tool_calls():
    envelope = '{"name": "get_weather", "arguments": {"city": "Oslo"}}'
    message, finish = protocol.tool_message(envelope)
    assert finish == "tool_calls" and message["content"] is None
    call = message["tool_calls"][0]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert json.loads(call["function"]["arguments"]) == {"city": "Oslo"}
    assert protocol.tool_message('{"response": "hello"}') == (
        {"role": "assistant", "content": "hello", "refusal": None}, None)
    cut = '{"name": "get_wea'  # cut by max_tokens
    assert protocol.tool_message(cut) == (
        {"role": "assistant", "content": cut, "refusal": None}, None)


def test_parallel_tool_calls_allow_a_list_of_calls():
    from autellix_engine.frontend import tool_envelope

    schema = tool_envelope.tool_output_schema([WEATHER], allow_text=False, parallel=True)
    assert {"type": "array"}.items() <= schema["anyOf"][-1].items()
    text = json.dumps([{"name": "get_weather", "arguments": {"city": "Paris"}},
                       {"name": "get_weather", "arguments": {"city": "Oslo"}}])
    message, finish = protocol.tool_message(text)
    assert finish == "tool_calls" and len(message["tool_calls"]) == 2
    assert message["tool_calls"][0]["id"] != message["tool_calls"][1]["id"]
    req = protocol.parse_request({"messages": USER, "tools": [WEATHER],
                                  "parallel_tool_calls": False}, chat=True, model="tiny",
                                 max_tokens_limit=4096)
    assert "array" not in json.dumps(req.params["json_schema"])
    with pytest.raises(RequestError):
        protocol.parse_request({"messages": USER, "tools": [WEATHER],
                                "parallel_tool_calls": "yes"}, chat=True, model="tiny",
                               max_tokens_limit=4096)


def test_numbers_go_on_in_the_type_vllm_validated_them_to():
    """``vllm serve`` reads ``"seed": "123"`` as 123; the raw string must not travel
    on (it killed the engine core's input thread: every later call hung)."""
    req = parse(seed="123", temperature="0.5", top_k="4", max_tokens="3")
    assert req.params["seed"] == 123 and type(req.params["seed"]) is int
    assert req.params["temperature"] == 0.5 and req.params["top_k"] == 4
    assert req.params["max_tokens"] == 3
    from autellix_engine.frontend.sampling import Sampling

    Sampling.from_params(**req.params)  # strict: it would refuse a string


@pytest.mark.parametrize(("body", "param"), [
    ({"seed": "twelve"}, "seed"), ({"seed": 1.5}, "seed"), ({"temperature": True}, "temperature"),
    ({"ignore_eos": 1}, "ignore_eos"), ({"ignore_eos": "true"}, "ignore_eos"),
    ({"max_tokens": True}, "max_tokens"), ({"top_k": [1]}, "top_k"),
])
def test_values_of_the_wrong_type_are_400s(body, param):
    with pytest.raises(RequestError) as info:
        parse(**body)
    assert info.value.status == 400 and info.value.param == param
