"""The tool-call envelope, shared by ``AutellixChatModel`` and the server (pure).

Small models have no native tool-calling format, so tools are described in a system
message and the engine's guided decoding constrains the output to a JSON envelope:

* a tool call: ``{"name": "<tool>", "arguments": {...}}`` (arguments follow the tool's
  JSON schema);
* with ``tool_choice="auto"``, a plain answer is also allowed: ``{"response": "..."}``;
* with parallel calls allowed (the server's ``parallel_tool_calls``, on by default as in
  OpenAI), several calls at once: a JSON list of call objects.

Tools are OpenAI-format dicts: ``{"type": "function", "function": {"name", ...}}``.

The server speaks the same envelope through vLLM's own tool-calling seams:
:func:`chat_template` wraps a model's chat template so that it describes the tools
this way, and ``envelope_parser.EnvelopeToolParser`` guides and parses the output.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

#: The envelope's name as a vLLM tool parser (``--tool-call-parser``).
ENVELOPE_PARSER = "autellix_envelope"
#: tool_choice values meaning "must call some tool".
MUST_CALL = ("any", "required", True)

TOOLS_PROMPT = (
    "You can call these tools (JSON schemas):\n{tools}\n"
    'To call a tool, answer with JSON: {{"name": <tool name>, "arguments": {{...}}}}.'
)
AUTO_SUFFIX = ' To answer directly instead, reply with JSON: {"response": <your answer>}.'
PARALLEL_SUFFIX = " To call several tools at once, answer with a JSON list of such calls."
#: The most calls one parallel answer may hold.
MAX_PARALLEL_CALLS = 8


def with_tools_note(messages: list[dict[str, str]], tools: list[dict], allow_text: bool,
                    parallel: bool = False) -> list[dict[str, str]]:
    """``messages`` with the tools described in the (first) system message."""
    specs = [t["function"] for t in tools]
    note = TOOLS_PROMPT.format(tools=_tojson(specs))
    note += PARALLEL_SUFFIX if parallel else ""
    return merge_system(messages, note + (AUTO_SUFFIX if allow_text else ""))


def chat_template(base: str) -> str:
    """``base`` (a model's Jinja chat template) preceded by a part that rewrites the
    conversation into the envelope's transcript, as :func:`with_tools_note` and the
    chat model's history do: the tools described in the first system message, earlier
    tool calls as the envelopes the model produced, and ``tools`` cleared, so that a
    template with a native tool format does not describe them a second time.

    A template cannot see ``tool_choice`` or ``parallel_tool_calls``, so the note
    offers all three answers; guided decoding allows only the ones the request does.
    """
    head, tail = TOOLS_PROMPT.format(tools="\0").split("\0")
    tail += PARALLEL_SUFFIX + AUTO_SUFFIX
    return _TEMPLATE_PREFIX.format(head=_jinja_str(head), tail=_jinja_str(tail)) + base


def _jinja_str(text: str) -> str:
    """``text`` as a Jinja string literal (Jinja reads Python's escapes; ASCII only)."""
    if not text.isascii():
        raise ValueError("the envelope's note must be ASCII")
    return json.dumps(text)


# A Jinja ``set`` at the top level rebinds ``messages`` and ``tools`` for the whole of
# the model's template that follows. Call arguments arrive as objects (vLLM's renderer
# parses them), so ``tojson`` writes them as the model produced them.
_TEMPLATE_PREFIX = """\
{{%- set ns = namespace(messages=[], specs=[]) %}}
{{%- for message in messages %}}
  {{%- if message.role == 'assistant' and message.tool_calls %}}
    {{%- set calls = namespace(texts=[]) %}}
    {{%- for call in message.tool_calls %}}
      {{%- set calls.texts = calls.texts + [{{'name': call.function.name, \
'arguments': call.function.arguments}}|tojson] %}}
    {{%- endfor %}}
    {{%- set ns.messages = ns.messages + [{{'role': 'assistant', \
'content': calls.texts|join('\\n')}}] %}}
  {{%- else %}}
    {{%- set ns.messages = ns.messages + [message] %}}
  {{%- endif %}}
{{%- endfor %}}
{{%- if tools %}}
  {{%- for tool in tools %}}
    {{%- set ns.specs = ns.specs + [tool.function if tool.function is defined else tool] %}}
  {{%- endfor %}}
  {{%- set note = {head} ~ (ns.specs|tojson) ~ {tail} %}}
  {{%- if ns.messages and ns.messages[0].role == 'system' %}}
    {{%- set ns.messages = [{{'role': 'system', \
'content': ns.messages[0].content ~ '\\n\\n' ~ note}}] + ns.messages[1:] %}}
  {{%- else %}}
    {{%- set ns.messages = [{{'role': 'system', 'content': note}}] + ns.messages %}}
  {{%- endif %}}
{{%- endif %}}
{{%- set messages = ns.messages %}}
{{%- set tools = none -%}}
"""


def merge_system(messages: list[dict[str, str]], note: str) -> list[dict[str, str]]:
    if messages and messages[0]["role"] == "system":
        first = {"role": "system", "content": f"{messages[0]['content']}\n\n{note}"}
        return [first, *messages[1:]]
    return [{"role": "system", "content": note}, *messages]


def render_call(name: str, arguments: Any) -> str:
    """An earlier tool call as the envelope the model produced."""
    return _tojson({"name": name, "arguments": arguments})


def _tojson(value: Any) -> str:
    """JSON as chat templates' ``tojson`` writes it (transformers' filter), so that the
    chat model and the server's :func:`chat_template` render the same transcript."""
    return json.dumps(value, ensure_ascii=False)


def tool_names(tools: list[dict]) -> list[str]:
    return [t["function"]["name"] for t in tools]


def names_a_function(tool_choice: Any) -> bool:
    """Whether ``tool_choice`` forces one named function."""
    return isinstance(tool_choice, dict) or (
        isinstance(tool_choice, str) and tool_choice not in ("auto", "none", *MUST_CALL))


def selected_tools(tools: list[dict], tool_choice: Any) -> tuple[list[dict], bool]:
    """(tools the output may call, whether a plain answer is allowed)."""
    if not tools or tool_choice == "none":
        return [], True
    if tool_choice in (None, "auto"):
        return tools, True
    if tool_choice in MUST_CALL:
        return tools, False
    name = tool_choice
    if isinstance(tool_choice, dict):
        name = (tool_choice.get("function") or {}).get("name") or tool_choice.get("name")
    chosen = [t for t in tools if t["function"]["name"] == name]
    if not chosen:
        msg = f"tool_choice names {name!r}, which is not a bound tool ({tool_names(tools)})"
        raise ValueError(msg)
    return chosen, False


def tool_output_schema(tools: list[dict], allow_text: bool, parallel: bool = False) -> dict:
    """JSON schema of the output envelope for guided decoding."""
    calls = [
        {
            "type": "object",
            "properties": {
                "name": {"type": "string", "enum": [t["function"]["name"]]},
                "arguments": _parameters(t),
            },
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for t in tools
    ]
    options = list(calls)
    if parallel:
        call = calls[0] if len(calls) == 1 else {"anyOf": calls}
        options.append({"type": "array", "items": call, "minItems": 1,
                        "maxItems": MAX_PARALLEL_CALLS})
    if allow_text:
        options.append(
            {
                "type": "object",
                "properties": {"response": {"type": "string"}},
                "required": ["response"],
                "additionalProperties": False,
            }
        )
    return options[0] if len(options) == 1 else {"anyOf": options}


def _parameters(tool: dict) -> dict:
    params = dict(tool["function"].get("parameters") or {"type": "object", "properties": {}})
    params.setdefault("type", "object")
    params.setdefault("properties", {})
    return params


def parse_tool_output(text: str) -> tuple[str, list[dict]]:
    """Split a guided envelope into (text content, tool calls).

    Returns the raw text as content if it is not a valid envelope (e.g. the output
    was cut by ``max_tokens``); invalid envelopes never raise.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return _truncated_response(text), []
    if isinstance(data, dict) and set(data) == {"response"}:
        return str(data["response"]), []
    items = data if isinstance(data, list) and data else [data]
    if all(_is_call(item) for item in items):
        return "", [{"name": str(item["name"]), "args": item["arguments"],
                     "id": f"call_{uuid.uuid4().hex[:24]}", "type": "tool_call"}
                    for item in items]
    return text, []


def _is_call(item: Any) -> bool:
    return isinstance(item, dict) and "name" in item and isinstance(item.get("arguments"), dict)


_RESPONSE_PREFIX = re.compile(r'^\s*\{\s*"response"\s*:\s*"')


def _truncated_response(text: str) -> str:
    """The answer text of a ``{"response": "...`` envelope cut by ``max_tokens``."""
    match = _RESPONSE_PREFIX.match(text)
    if match is None:
        return text
    partial = text[match.end():]
    return _decoded_prefix(partial) or partial


class ResponseText:
    """The answer text of a ``{"response": "..."}`` envelope as it is generated: feed
    the output's text pieces, get the answer's new text, so a plain answer under
    ``tool_choice="auto"`` streams like any other (a tool call streams nothing here;
    it is parsed at the end)."""

    def __init__(self) -> None:
        self.output = ""  # all the output fed so far
        self.sent = ""  # answer text handed out so far
        self._closed = False

    def feed(self, piece: str) -> str:
        """The answer text that ``piece`` completes ("" when none, or no answer)."""
        self.output += piece
        if self._closed:
            return ""
        match = _RESPONSE_PREFIX.match(self.output)
        if match is None:
            return ""
        partial = self.output[match.end():]
        end = _closing_quote(partial)
        if end is not None:
            partial, self._closed = partial[:end], True
        text = _decoded_prefix(partial)
        new, self.sent = text[len(self.sent):], text
        return new


def _closing_quote(partial: str) -> int | None:
    """Index of the first unescaped ``"`` in a JSON string's body."""
    escaped = False
    for i, ch in enumerate(partial):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            return i
    return None


def _decoded_prefix(partial: str) -> str:
    """The longest decodable prefix of a JSON string's body (a piece may end inside an
    escape sequence such as ``\\u00``)."""
    for cut in range(len(partial), max(len(partial) - 8, -1), -1):
        try:
            return json.loads(f'"{partial[:cut]}"')
        except json.JSONDecodeError:
            continue
    return ""
