"""Pure converters between LangChain messages/tools and the engine's chat format.

Small models have no native tool-calling format, so tools are described in a system
message and the engine's guided decoding constrains the output to a JSON envelope:

* a tool call: ``{"name": "<tool>", "arguments": {...}}`` (arguments follow the tool's
  JSON schema);
* with ``tool_choice="auto"``, a plain answer is also allowed: ``{"response": "..."}``.

Earlier tool calls are rendered back into the history in the same envelope, and tool
results as ``tool`` messages, so the model sees a consistent transcript.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)

#: tool_choice values meaning "must call some tool".
MUST_CALL = ("any", "required", True)

TOOLS_PROMPT = (
    "You can call these tools (JSON schemas):\n{tools}\n"
    'To call a tool, answer with JSON: {{"name": <tool name>, "arguments": {{...}}}}.'
)
AUTO_SUFFIX = ' To answer directly instead, reply with JSON: {"response": <your answer>}.'


def content_text(content: str | list[Any]) -> str:
    """The text of a message content (string or content blocks)."""
    if isinstance(content, str):
        return content
    parts = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        else:
            kind = block.get("type") if isinstance(block, dict) else type(block).__name__
            msg = f"Unsupported content block {kind!r}: the engine serves text models only"
            raise ValueError(msg)
    return "".join(parts)


def to_chat_messages(
    messages: Sequence[BaseMessage], tools: list[dict] | None, tool_choice: Any
) -> list[dict[str, str]]:
    """LangChain messages (plus bound tools) as ``{"role", "content"}`` dicts."""
    out: list[dict[str, str]] = []
    for m in messages:
        if isinstance(m, SystemMessage):
            out.append({"role": "system", "content": content_text(m.content)})
        elif isinstance(m, HumanMessage):
            out.append({"role": "user", "content": content_text(m.content)})
        elif isinstance(m, AIMessage):
            out.append({"role": "assistant", "content": _assistant_text(m)})
        elif isinstance(m, ToolMessage):
            out.append({"role": "tool", "content": content_text(m.content)})
        elif isinstance(m, ChatMessage):
            out.append({"role": m.role, "content": content_text(m.content)})
        else:
            raise ValueError(f"Unsupported message type: {type(m).__name__}")
    callable_tools, allow_text = selected_tools(tools or [], tool_choice)
    if callable_tools:
        specs = [t["function"] for t in callable_tools]
        note = TOOLS_PROMPT.format(tools=json.dumps(specs, separators=(",", ":")))
        out = _merge_system(out, note + (AUTO_SUFFIX if allow_text else ""))
    return out


def _merge_system(messages: list[dict[str, str]], note: str) -> list[dict[str, str]]:
    if messages and messages[0]["role"] == "system":
        first = {"role": "system", "content": f"{messages[0]['content']}\n\n{note}"}
        return [first, *messages[1:]]
    return [{"role": "system", "content": note}, *messages]


def _assistant_text(m: AIMessage) -> str:
    if not m.tool_calls:
        return content_text(m.content)
    calls = [json.dumps({"name": c["name"], "arguments": c["args"]}) for c in m.tool_calls]
    return "\n".join(calls)


# --- tools ---------------------------------------------------------------------------
def tool_names(tools: list[dict]) -> list[str]:
    return [t["function"]["name"] for t in tools]


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


def tool_output_schema(tools: list[dict], allow_text: bool) -> dict:
    """JSON schema of the output envelope for guided decoding."""
    options = [
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
    if isinstance(data, dict) and "name" in data and isinstance(data.get("arguments"), dict):
        call = {"name": str(data["name"]), "args": data["arguments"],
                "id": f"call_{uuid.uuid4().hex[:24]}", "type": "tool_call"}
        return "", [call]
    return text, []


_RESPONSE_PREFIX = re.compile(r'^\s*\{\s*"response"\s*:\s*"')


def _truncated_response(text: str) -> str:
    """The answer text of a ``{"response": "...`` envelope cut by ``max_tokens``."""
    match = _RESPONSE_PREFIX.match(text)
    if match is None:
        return text
    partial = text[match.end():]
    for cut in range(len(partial), max(len(partial) - 8, -1), -1):
        try:  # drop a dangling escape sequence, then unescape what is left
            return json.loads(f'"{partial[:cut]}"')
        except json.JSONDecodeError:
            continue
    return partial
