"""The tool-call envelope as a vLLM tool parser: ``--tool-call-parser autellix_envelope``.

For a model without a tool format of its own (SmolLM2, the tiny test model), vLLM's
server needs two things to call tools under ``tool_choice="auto"``: a chat template that
describes the tools (``tool_envelope.chat_template``; ``autellix serve`` wraps the
model's template with it when this parser is chosen) and a parser that guides and reads
the output. This is the parser: it guides the output to the envelope (a call, a list
of calls, or under ``auto`` also ``{"response": ...}``) and reads it back as OpenAI tool
calls or a plain answer, whose text streams as it comes.

Importing this module registers the parser, so a stock ``vllm serve`` takes it as
``--tool-parser-plugin <this file> --tool-call-parser autellix_envelope
--enable-auto-tool-choice --chat-template FILE`` (FILE: what ``autellix
envelope-template`` prints).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from openai.types.responses.function_tool import FunctionTool
from vllm.entrypoints.generate.base.protocol import (
    DeltaFunctionCall,
    DeltaMessage,
    DeltaToolCall,
    ExtractedToolCallInformation,
    FunctionCall,
    ToolCall,
)
from vllm.entrypoints.openai.chat_completion.protocol import (
    ChatCompletionNamedToolChoiceParam,
    ChatCompletionRequest,
    ChatCompletionToolsParam,
)
from vllm.entrypoints.openai.responses.protocol import ResponsesRequest
from vllm.renderers.chat_utils import make_tool_call_id
from vllm.sampling_params import StructuredOutputsParams
from vllm.tokenizers import TokenizerLike
from vllm.tool_parsers.abstract_tool_parser import Tool, ToolParser, ToolParserManager

from autellix_engine.frontend.tool_envelope import (
    ENVELOPE_PARSER,
    ResponseText,
    chat_template,
    parse_tool_output,
    selected_tools,
    tool_output_schema,
)


class EnvelopeToolParser(ToolParser):
    """Guides tool-calling output to the envelope and reads it back.

    It handles every tool choice itself (``supports_required_and_named = False``), so
    the model sees one format whatever the request asks; vLLM then reads required and
    named choices through it as for ``auto`` (with ``--enable-auto-tool-choice``, as for
    vLLM's own parsers of this kind). It streams as vLLM's engine-based parsers do
    (``engine_based_streaming``: each call gets the new text only, and a plain answer
    comes back unwrapped, not as the envelope's JSON)."""

    supports_required_and_named = False
    engine_based_streaming = True

    def __init__(self, tokenizer: TokenizerLike, tools: list[Tool] | None = None) -> None:
        super().__init__(tokenizer, tools)
        self._answer = ResponseText()

    def adjust_request(self, request: ChatCompletionRequest | ResponsesRequest
                       ) -> ChatCompletionRequest | ResponsesRequest:
        functions = [_as_chat_tool(t) for t in request.tools or ()
                     if isinstance(t, ChatCompletionToolsParam | FunctionTool)]
        if not functions or request.tool_choice == "none":
            return request  # (the Responses API's built-in tools are not for this parser)
        choice = _choice(request.tool_choice)
        if choice == "auto" and _has_output_format(request):
            return request  # the caller's own format: answers follow it, calls cannot
        tools, allow_text = selected_tools(functions, choice)
        request.structured_outputs = StructuredOutputsParams(json=tool_output_schema(
            tools, allow_text, parallel=request.parallel_tool_calls is not False))
        if isinstance(request, ChatCompletionRequest):
            request.response_format = None
        else:
            request.text = None  # vLLM refuses structured outputs beside text.format
        return request

    def extract_tool_calls(self, model_output: str, request: ChatCompletionRequest
                           ) -> ExtractedToolCallInformation:
        if request.tool_choice == "none":
            return ExtractedToolCallInformation(tools_called=False, tool_calls=[],
                                                content=model_output)
        content, calls = parse_tool_output(model_output)
        return ExtractedToolCallInformation(
            tools_called=bool(calls),
            tool_calls=[ToolCall(id=c["id"], function=FunctionCall(
                name=c["name"], arguments=json.dumps(c["args"], ensure_ascii=False)))
                for c in calls],
            content=content or None)

    def extract_tool_calls_streaming(
            self, previous_text: str, current_text: str, delta_text: str,
            previous_token_ids: Sequence[int], current_token_ids: Sequence[int],
            delta_token_ids: Sequence[int], request: ChatCompletionRequest,
    ) -> DeltaMessage | None:
        """A plain answer streams as it comes; calls go out whole, once their JSON is
        complete (guided decoding ends the output there)."""
        if request.tool_choice == "none":
            return DeltaMessage(content=delta_text) if delta_text else None
        answer = self._answer.feed(delta_text)
        if answer:
            return DeltaMessage(content=answer)
        if self.prev_tool_call_arr:
            return None  # calls sent; what follows is whitespace
        _, calls = parse_tool_output(self._answer.output)
        if not calls:
            return None
        self.prev_tool_call_arr = [{"name": c["name"], "arguments": c["args"]} for c in calls]
        self.streamed_args_for_tool = [json.dumps(c["args"], ensure_ascii=False)
                                       for c in calls]
        self.current_tool_id = len(calls) - 1
        return DeltaMessage(tool_calls=[
            DeltaToolCall(index=i, id=make_tool_call_id(), type="function",
                          function=DeltaFunctionCall(name=c["name"], arguments=args))
            for i, (c, args) in enumerate(zip(calls, self.streamed_args_for_tool,
                                              strict=True))])

    def finish_streaming(self) -> DeltaMessage | None:
        """At the stream's end, what the full response would hold as content but was
        not streamed: an output that is no envelope (cut by ``max_tokens``)."""
        if self.prev_tool_call_arr or not self._answer.output:
            return None
        content, _ = parse_tool_output(self._answer.output)
        if not content.startswith(self._answer.sent):
            return None
        rest = content[len(self._answer.sent):]
        return DeltaMessage(content=rest) if rest else None


def _choice(tool_choice: Any) -> Any:
    """vLLM's tool choice (a string, or a named choice of Chat Completions or of the
    Responses API) as the envelope's."""
    if tool_choice is None or isinstance(tool_choice, str):
        return tool_choice or "auto"
    if isinstance(tool_choice, ChatCompletionNamedToolChoiceParam):
        return {"name": tool_choice.function.name}
    return {"name": tool_choice.name}


def wrapped_template(given: str | None, tokenizer: Any) -> str:
    """The chat template for this parser: ``given`` (``--chat-template``: a file or the
    template's text), else the model's own (its tokenizer's), wrapped to describe tools
    as envelopes (``tool_envelope.chat_template``)."""
    from vllm.renderers.chat_utils import load_chat_template

    base = load_chat_template(given) if given else tokenizer.get_chat_template()
    return chat_template(base)


def _has_output_format(request: ChatCompletionRequest | ResponsesRequest) -> bool:
    if request.structured_outputs is not None:
        return True
    if isinstance(request, ChatCompletionRequest):
        return request.response_format is not None and request.response_format.type != "text"
    fmt = request.text.format if request.text is not None else None
    return fmt is not None and fmt.type != "text"


def _as_chat_tool(tool: ChatCompletionToolsParam | FunctionTool) -> dict:
    """A Chat Completions or Responses function tool as the envelope's tool dict."""
    if isinstance(tool, ChatCompletionToolsParam):
        return {"type": "function", "function": tool.function.model_dump(exclude_none=True)}
    return {"type": "function", "function": {"name": tool.name,
                                             "parameters": tool.parameters}}


ToolParserManager.register_module(ENVELOPE_PARSER, module=EnvelopeToolParser)
