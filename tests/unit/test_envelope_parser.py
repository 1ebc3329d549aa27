"""The envelope as vLLM's tool-calling parts, without an engine: the wrapped chat template
(rendered by transformers, as vLLM renders it) and the parser, driven through vLLM's own
unified ``Parser`` (what its server uses for ``--tool-call-parser autellix_envelope``)."""

import json

import pytest

from autellix_engine.frontend.models import resolve_model
from autellix_engine.frontend.tool_envelope import (
    ENVELOPE_PARSER,
    chat_template,
    render_call,
    tool_output_schema,
    with_tools_note,
)

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather of a city, é",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {}}}}


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model("tiny").path)


@pytest.fixture(scope="module")
def parser_cls(tokenizer):
    from vllm.parser import ParserManager

    import autellix_engine.frontend.envelope_parser  # noqa: F401 - registers it

    return ParserManager.get_parser(tool_parser_name=ENVELOPE_PARSER, enable_auto_tools=True,
                                    tokenizer=tokenizer)


def _request(**fields):
    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest

    return ChatCompletionRequest(model="tiny", messages=[{"role": "user", "content": "hi"}],
                                 **fields)


def _render(tokenizer, messages, template, tools=None):
    return tokenizer.apply_chat_template(messages, tools=tools, chat_template=template,
                                         tokenize=False, add_generation_prompt=True)


@pytest.mark.parametrize("system", [None, "Be brief."])
def test_the_wrapped_template_renders_the_chat_models_transcript(tokenizer, system):
    """Tools in the (first) system message, an earlier call as its envelope: the same
    text the chat model renders from the same conversation."""
    call = {"name": "get_weather", "arguments": {"city": "Zürich"}}
    head = [{"role": "system", "content": system}] if system else []
    conversation = [*head, {"role": "user", "content": "Weather?"},
                    {"role": "assistant", "content": None, "tool_calls": [
                        {"id": "c1", "type": "function", "function": call}]},
                    {"role": "tool", "tool_call_id": "c1", "content": "sunny"}]
    base = tokenizer.chat_template
    server = _render(tokenizer, conversation, chat_template(base), tools=[WEATHER, TIME])
    transcript = [*head, {"role": "user", "content": "Weather?"},
                  {"role": "assistant", "content": render_call(**call)},
                  {"role": "tool", "content": "sunny"}]
    chat_model = _render(tokenizer, with_tools_note(transcript, [WEATHER, TIME],
                                                    allow_text=True, parallel=True), base)
    assert server == chat_model
    assert '"Zürich"' in server and "Weather of a city, é" in server
    if system:
        assert server.count("Be brief.") == 1
    # Without tools: nothing added, earlier calls still rendered as envelopes.
    plain = _render(tokenizer, conversation, chat_template(base))
    assert "You can call" not in plain and render_call(**call) in plain


def test_a_template_with_its_own_tool_format_does_not_describe_tools_twice(tokenizer):
    native = "{% if tools %}NATIVE{% endif %}{% for m in messages %}{{ m.content }}|{% endfor %}"
    text = _render(tokenizer, [{"role": "user", "content": "hi"}], chat_template(native),
                   tools=[WEATHER])
    assert "NATIVE" not in text and text.startswith("You can call these tools")


@pytest.mark.parametrize(("fields", "allowed", "parallel"), [
    ({"tools": [WEATHER, TIME]}, ["get_weather", "get_time"], True),
    ({"tools": [WEATHER, TIME], "tool_choice": "auto", "parallel_tool_calls": False},
     ["get_weather", "get_time"], False),
    ({"tools": [WEATHER, TIME], "tool_choice": "required"}, ["get_weather", "get_time"], True),
    ({"tools": [WEATHER, TIME], "tool_choice": {
        "type": "function", "function": {"name": "get_time"}}}, ["get_time"], True),
])
def test_requests_are_guided_to_the_envelope(parser_cls, tokenizer, fields, allowed, parallel):
    request = _request(**fields)
    adjusted = parser_cls(tokenizer, request.tools).adjust_request(request)
    tools = [t for t in (WEATHER, TIME) if t["function"]["name"] in allowed]
    auto = fields.get("tool_choice", "auto") == "auto"
    assert adjusted.structured_outputs.json == tool_output_schema(tools, allow_text=auto,
                                                                  parallel=parallel)


@pytest.mark.parametrize("fields", [
    {}, {"tools": [WEATHER], "tool_choice": "none"},
    {"tools": [WEATHER], "response_format": {"type": "json_object"}},
])
def test_requests_left_alone(parser_cls, tokenizer, fields):
    """No tools, tool_choice none, or the caller's own format under auto."""
    request = _request(**fields)
    before = request.model_dump()
    assert parser_cls(tokenizer, request.tools).adjust_request(request).model_dump() == before


def _parse(parser_cls, tokenizer, text, **fields):
    request = _request(tools=[WEATHER, TIME], **fields)
    _, content, calls = parser_cls(tokenizer, request.tools).parse(
        text, request, enable_auto_tools=True)
    return content, [(c.name, json.loads(c.arguments)) for c in calls or ()]


def test_outputs_read_as_calls_or_answers(parser_cls, tokenizer):
    one = '{"name": "get_weather", "arguments": {"city": "Oslo"}}'
    assert _parse(parser_cls, tokenizer, one) == (None, [("get_weather", {"city": "Oslo"})])
    two = f'[{one}, {{"name": "get_time", "arguments": {{}}}}]'
    assert _parse(parser_cls, tokenizer, two, tool_choice="required")[1] == [
        ("get_weather", {"city": "Oslo"}), ("get_time", {})]
    # A plain answer comes back unwrapped, also when max_tokens cut it.
    assert _parse(parser_cls, tokenizer, '{"response": "Hi \\u00e9"}') == ("Hi é", [])
    assert _parse(parser_cls, tokenizer, '{"response": "Hi th') == ("Hi th", [])
    # Under tool_choice none the output is not guided: whatever it is, it is content.
    assert _parse(parser_cls, tokenizer, one, tool_choice="none") == (one, [])


def _stream(parser_cls, tokenizer, text, **fields):
    """``text`` through vLLM's streaming parser, a token at a time."""
    request = _request(tools=[WEATHER, TIME], **fields)
    parser = parser_cls(tokenizer, request.tools)
    ids = tokenizer.encode(text, add_special_tokens=False)
    deltas = [parser.parse_delta(tokenizer.decode([i]), [i], request, prompt_token_ids=[0],
                                 finished=n == len(ids) - 1)
              for n, i in enumerate(ids)]
    return [d for d in deltas if d is not None and (d.content or d.tool_calls)]


def test_a_plain_answer_streams_as_it_comes(parser_cls, tokenizer):
    deltas = _stream(parser_cls, tokenizer, '{"response": "The sky is blue today."}')
    assert "".join(d.content for d in deltas) == "The sky is blue today."
    assert len(deltas) > 2 and not any(d.tool_calls for d in deltas)


def test_calls_stream_once_whole(parser_cls, tokenizer):
    text = ('[{"name": "get_weather", "arguments": {"city": "Oslo"}}, '
            '{"name": "get_time", "arguments": {}}]')
    deltas = _stream(parser_cls, tokenizer, text)
    assert len(deltas) == 1 and not deltas[0].content
    calls = deltas[0].tool_calls
    assert [(c.index, c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        (0, "get_weather", {"city": "Oslo"}), (1, "get_time", {})]
    assert len({c.id for c in calls}) == 2


def test_an_output_cut_inside_a_call_ends_as_its_text(parser_cls, tokenizer):
    """As the full response would hold it: the raw text (nothing is lost)."""
    text = '[{"name": "get_weather", "arguments": {"ci'
    deltas = _stream(parser_cls, tokenizer, text)
    assert "".join(d.content or "" for d in deltas) == text
    assert not any(d.tool_calls for d in deltas)
    none = _stream(parser_cls, tokenizer, "plain words", tool_choice="none")
    assert "".join(d.content for d in none) == "plain words"


def test_responses_requests_guide_to_their_function_tools_only(parser_cls, tokenizer):
    """The Responses API's tools: function tools by their top-level fields; a built-in
    tool (web search) is not the envelope's, and alone leaves the request as it is."""
    from vllm.entrypoints.openai.responses.protocol import ResponsesRequest

    function = {"type": "function", "name": "get_time", "parameters": TIME["function"][
        "parameters"]}
    request = ResponsesRequest(model="tiny", input="hi",
                               tools=[{"type": "web_search_preview"}, function])
    adjusted = parser_cls(tokenizer, request.tools).adjust_request(request)
    assert adjusted.structured_outputs.json == tool_output_schema([TIME], allow_text=True,
                                                                  parallel=True)
    builtin = ResponsesRequest(model="tiny", input="hi", tools=[{"type": "web_search_preview"}])
    assert parser_cls(tokenizer, builtin.tools).adjust_request(builtin).structured_outputs is None
