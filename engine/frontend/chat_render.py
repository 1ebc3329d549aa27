"""Chat messages (and tools) into the prompt text, by the model's chat template.

What vLLM's renderer does for ``/v1/chat/completions`` on a Hugging Face tokenizer, for
the calls that reach the engine as messages (``AutellixEngine.stream``): the template
is the tokenizer's own or the configured one (``EngineConfig.chat_template``, loaded
by vLLM's ``load_chat_template`` like ``vllm serve --chat-template``), and tools go to
the template as ``tools``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from autellix_engine.core.errors import InvalidRequestError
from autellix_engine.frontend.sampling import check_text


def load_template(template: str | None) -> str | None:
    """A template given as text or as a file path (vLLM's own loader and rules)."""
    if template is None:
        return None
    from vllm.renderers.chat_utils import load_chat_template

    return load_chat_template(template)


def render_chat(tokenizer: Any, messages: Sequence[dict[str, Any]],
                tools: list[dict[str, Any]] | None, template: str | None) -> str:
    """The prompt text of ``messages`` (validated) with a generation prompt."""
    prepared = [_template_message(m) for m in messages]
    try:
        return tokenizer.apply_chat_template(
            prepared, tools=_checked_tools(tools), chat_template=template, tokenize=False,
            add_generation_prompt=True)
    except InvalidRequestError:
        raise
    except Exception as e:  # jinja2's errors: the template refused these messages
        raise InvalidRequestError(f"The chat template cannot render these messages: {e}") from e


def _template_message(message: Any) -> dict[str, Any]:
    if not isinstance(message, dict) or "role" not in message or "content" not in message:
        raise InvalidRequestError(f"Chat message without role/content: {message!r}")
    for value in message.values():
        if isinstance(value, str):
            check_text(value, "A chat message")
    calls = message.get("tool_calls")
    if calls is None:
        return message
    if message["role"] != "assistant" or not isinstance(calls, list):
        raise InvalidRequestError("tool_calls must be a list, on an assistant message")
    # Templates take a call's arguments as an object; OpenAI's format carries a JSON
    # string (vLLM's renderer converts them the same way, ``_postprocess_messages``).
    return {**message, "tool_calls": [_template_call(c) for c in calls]}


def _template_call(call: Any) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise InvalidRequestError(f"A tool call needs function.name: {call!r}")
    arguments = function.get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as e:
            raise InvalidRequestError(f"Tool call arguments are not JSON: {e}") from e
    return {**call, "function": {**function, "arguments": arguments}}


def _checked_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    if tools is None:
        return None
    if not isinstance(tools, list):
        raise InvalidRequestError("tools must be a list of OpenAI tool definitions")
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise InvalidRequestError(f"A tool needs function.name: {tool!r}")
    return tools or None
