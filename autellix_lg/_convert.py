"""Pure converters between LangChain messages/tools and the engine's chat format.

Tools use the JSON envelope of :mod:`autellix_engine.frontend.tool_envelope` (shared
with the server).
Earlier tool calls are rendered back into the history in the same envelope, and tool
results as ``tool`` messages, so the model sees a consistent transcript.
"""

from __future__ import annotations

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

from autellix_engine.frontend.tool_envelope import (  # noqa: F401 - re-exported for the chat model
    MUST_CALL,
    parse_tool_output,
    render_call,
    selected_tools,
    tool_names,
    tool_output_schema,
    with_tools_note,
)


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
        out = with_tools_note(out, callable_tools, allow_text)
    return out


def _assistant_text(m: AIMessage) -> str:
    if not m.tool_calls:
        return content_text(m.content)
    calls = [render_call(c["name"], c["args"]) for c in m.tool_calls]
    return "\n".join(calls)
