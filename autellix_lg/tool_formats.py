"""How a call's bound tools reach the model, and how its tool calls come back.

Two formats (``AutellixChatModel(tool_format=...)``):

- **envelope**: a JSON envelope described in a system note, the output guided to it
  (``autellix_engine.frontend.tool_envelope``). Works with any model, also one that
  was never trained on tools (SmolLM2).
- **native**: the model's own format, as ``vllm serve --enable-auto-tool-choice
  --tool-call-parser NAME`` runs it. The chat template renders the tools and the
  history (assistant ``tool_calls``, ``tool`` results); vLLM's parser for that format
  reads the calls from the output; ``required`` and named tool choice are guided by
  the JSON schema vLLM's parser sets (structured outputs). In front of a remote server,
  the server's template and parser do both, and its tool calls are taken as they come.

Each format is a small object the chat model asks for the request's messages, tools
and output schema, for the text to stream of each chunk, and for the final content
and tool calls.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from langchain_core.messages import BaseMessage, convert_to_openai_messages

from autellix_engine.frontend.results import CallResult, StreamChunk, ToolCall
from autellix_engine.frontend.tool_envelope import MUST_CALL, ResponseText
from autellix_lg import _convert

ToolFormatName = Literal["auto", "native", "envelope"]


class ToolFormat(Protocol):
    """What the chat model needs from a tool format."""

    #: The chat messages the call sends.
    messages: list[dict[str, Any]]
    #: OpenAI tool definitions for the chat template or server (native), else None.
    tools: list[dict[str, Any]] | None
    #: OpenAI's ``tool_choice``, for a server that parses the calls itself.
    tool_choice: str | dict[str, Any] | None
    #: The engine's guided-decoding arguments for the output (``json_schema`` or
    #: ``structural_tag``); empty: free text.
    guided: dict[str, Any]

    def visible(self, chunk: StreamChunk) -> str:
        """The answer text this chunk adds (what streams to the caller)."""
        ...

    def finish(self, text: str, result: CallResult | None) -> tuple[str, list[ToolCall]]:
        """The whole answer text and the tool calls of the output ``text``."""
        ...


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


class Envelope:
    """Tools through the JSON envelope (also the plain path: no tools bound)."""

    def __init__(self, messages: Sequence[BaseMessage], tools: list[dict] | None,
                 tool_choice: Any, response_schema: dict | None) -> None:
        callable_tools, allow_text = _convert.selected_tools(tools or [], tool_choice)
        self.tool_mode = bool(callable_tools)
        self.messages = _convert.to_chat_messages(messages, tools, tool_choice)
        self.tools = None
        self.tool_choice = None
        schema = (_convert.tool_output_schema(callable_tools, allow_text)
                  if self.tool_mode else response_schema)
        self.guided = {} if schema is None else {"json_schema": schema}
        # Under "auto" a plain answer streams from inside its envelope as it comes.
        self._answer = ResponseText() if self.tool_mode and allow_text else None

    def visible(self, chunk: StreamChunk) -> str:
        if not self.tool_mode:
            return chunk.text
        return self._answer.feed(chunk.text) if self._answer is not None else ""

    def finish(self, text: str, result: CallResult | None) -> tuple[str, list[ToolCall]]:
        if not self.tool_mode:
            return text, []
        content, calls = _convert.parse_tool_output(text)
        return content, [ToolCall(c["id"], c["name"], json.dumps(c["args"])) for c in calls]


def openai_messages(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """LangChain messages in OpenAI's chat format (langchain-core's converter), with
    text content: what a chat template and an OpenAI server take."""
    return convert_to_openai_messages(list(messages), text_format="string")


def openai_tool_choice(tool_choice: Any) -> str | dict[str, Any]:
    """LangChain's ``tool_choice`` values as OpenAI's."""
    if tool_choice in (None, "auto"):
        return "auto"
    if tool_choice == "none":
        return "none"
    if tool_choice in MUST_CALL:
        return "required"
    if isinstance(tool_choice, dict):
        name = (tool_choice.get("function") or {}).get("name") or tool_choice.get("name")
    else:
        name = tool_choice
    return {"type": "function", "function": {"name": name}}


class NativeParsed:
    """Native tools through an in-process engine: the engine's chat template renders
    them, vLLM's parser (``parser_cls``, from vLLM's ``ParserManager``) reads the
    output, streaming and at the end, exactly as vLLM's chat serving does."""

    def __init__(self, model_name: str, messages: Sequence[BaseMessage], tools: list[dict],
                 tool_choice: Any, parser_cls: type, tokenizer: Any) -> None:
        from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest

        self.messages = openai_messages(messages)
        self.tools = tools
        self.tool_choice = None  # the engine renders; the parsing is ours, below
        request = ChatCompletionRequest(model=model_name, messages=self.messages, tools=tools,
                                        tool_choice=openai_tool_choice(tool_choice))
        self._new_parser = lambda: parser_cls(tokenizer, request.tools)
        # vLLM's parser sets the structured output of the call (a JSON schema for
        # required / named choice, or a structural tag of the native format).
        self._request = self._new_parser().adjust_request(request)
        self.guided = _guided_params(self._request.structured_outputs)
        self._streaming = self._new_parser()
        self._token_ids: list[int] = []
        # A call that must call a tool has no answer to stream.
        self._answers = tool_choice in (None, "auto")

    def visible(self, chunk: StreamChunk) -> str:
        self._token_ids.extend(chunk.token_ids)
        if not self._answers or (not chunk.text and not chunk.token_ids):
            return ""
        # The prompt's ids only tell a reasoning parser where reasoning stands; there is
        # none here, and any value (even empty) lets the tool phase begin.
        delta = self._streaming.parse_delta(chunk.text, list(chunk.token_ids), self._request,
                                            prompt_token_ids=[], finished=False)
        return (delta.content or "") if delta is not None else ""

    def finish(self, text: str, result: CallResult | None) -> tuple[str, list[ToolCall]]:
        _, content, calls = self._new_parser().parse(
            text, self._request, enable_auto_tools=True, model_output_token_ids=self._token_ids)
        return content or "", [ToolCall(c.id or new_call_id(), c.name, c.arguments)
                               for c in calls or []]


class NativeRemote:
    """Native tools in front of a remote server: its template renders them and its
    parser returns the calls (``vllm serve``'s flags on the server)."""

    def __init__(self, messages: Sequence[BaseMessage], tools: list[dict],
                 tool_choice: Any) -> None:
        self.messages = openai_messages(messages)
        self.tools = tools
        self.tool_choice = openai_tool_choice(tool_choice)
        self.guided = {}

    def visible(self, chunk: StreamChunk) -> str:
        return chunk.text

    def finish(self, text: str, result: CallResult | None) -> tuple[str, list[ToolCall]]:
        return text, list(result.tool_calls) if result is not None else []


def _guided_params(guided: Any) -> dict[str, Any]:
    """vLLM's ``StructuredOutputsParams`` as the engine's guided-decoding arguments."""
    if guided is None:
        return {}
    if guided.json is not None:
        schema = guided.json
        return {"json_schema": json.loads(schema) if isinstance(schema, str) else schema}
    if guided.structural_tag is not None:
        return {"structural_tag": guided.structural_tag}
    raise ValueError(f"The tool parser asks for guided decoding the engine does not take: "
                     f"{guided!r}")


def template_takes_tools(template: str | None) -> bool:
    """Whether a chat template renders a ``tools`` variable (a template without tools
    would silently drop them: the envelope is the right format there)."""
    return bool(template) and "tools" in template


@dataclass(frozen=True, slots=True)
class FormatChoice:
    """The inputs that decide a call's tool format."""

    requested: ToolFormatName
    tool_parser: str | None

    def native_for_remote(self) -> bool:
        return self.requested == "native" or (self.requested == "auto"
                                              and self.tool_parser is not None)

    def native_for_engine(self, template: str | None) -> bool:
        if self.requested == "native":
            return True
        return (self.requested == "auto" and self.tool_parser is not None
                and template_takes_tools(template))
