"""OpenAI wire format: request validation and response bodies (pure)."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from autellix_engine import tool_envelope
from autellix_engine.policy.wire import STATS_KEY
from autellix_engine.results import CallResult

_SAMPLING = {"temperature": float, "top_p": float, "seed": int, "presence_penalty": float,
             "frequency_penalty": float}


class RequestError(ValueError):
    """A bad request: becomes an OpenAI-style error body with ``status``."""

    def __init__(self, message: str, *, param: str | None = None, status: int = 400,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.param, self.status, self.code = param, status, code

    def body(self) -> dict[str, Any]:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return {"error": {"message": str(self), "type": kind, "param": self.param,
                          "code": self.code}}


@dataclass
class ParsedRequest:
    prompt: Any  # chat messages or text
    params: dict[str, Any] = field(default_factory=dict)
    stream: bool = False
    include_usage: bool = False
    program_id: str | None = None
    thread: str = "main"
    tool_mode: bool = False  # the output is a tool-call envelope (OpenAI ``tools``)
    session_id: str | None = None  # vLLM's session identity (body ``session_id``)
    priority: int = 0  # vLLM's ``priority`` (lower first); a strict outer key


def parse_request(body: Any, *, chat: bool, model: str, max_tokens_limit: int) -> ParsedRequest:
    """Validate a ``/v1/chat/completions`` or ``/v1/completions`` body."""
    if not isinstance(body, dict):
        raise RequestError("The request body must be a JSON object")
    if body.get("model") not in (None, model):
        raise RequestError(f"The model {body.get('model')!r} does not exist; this server "
                           f"serves {model!r}", param="model", status=400,
                           code="model_not_found")
    if body.get("n", 1) != 1:
        raise RequestError("Only n=1 is supported", param="n")
    prompt = _messages(body) if chat else _prompt(body)
    tools, allow_text = _tools(body) if chat else ([], True)
    params: dict[str, Any] = {}
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None:
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise RequestError("max_tokens must be a positive integer", param="max_tokens")
        if max_tokens > max_tokens_limit:
            raise RequestError(f"max_tokens may be at most {max_tokens_limit}",
                               param="max_tokens")
        params["max_tokens"] = max_tokens
    for name, kind in _SAMPLING.items():
        if body.get(name) is not None:
            value = body[name]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise RequestError(f"{name} must be a number", param=name)
            params[name] = kind(value)
    for name in ("top_k", "min_tokens"):  # vLLM extensions
        if body.get(name) is not None:
            if isinstance(body[name], bool) or not isinstance(body[name], int):
                raise RequestError(f"{name} must be an integer", param=name)
            params[name] = body[name]
    if body.get("ignore_eos") is not None:
        if not isinstance(body["ignore_eos"], bool):
            raise RequestError("ignore_eos must be a boolean", param="ignore_eos")
        params["ignore_eos"] = body["ignore_eos"]
    stop = body.get("stop")
    if stop is not None:
        stop = [stop] if isinstance(stop, str) else stop
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise RequestError("stop must be a string or a list of strings", param="stop")
        params["stop"] = stop
    schema = _response_schema(body.get("response_format"))
    if tools:
        if schema is not None:
            raise RequestError("tools and response_format cannot be combined", param="tools")
        prompt = tool_envelope.with_tools_note(prompt, tools, allow_text)
        schema = tool_envelope.tool_output_schema(tools, allow_text)
    if schema is not None:
        params["json_schema"] = schema
    stream = bool(body.get("stream", False))
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise RequestError("stream_options must be an object", param="stream_options")
    program_id = body.get("program_id")
    if program_id is not None and not isinstance(program_id, str):
        raise RequestError("program_id must be a string", param="program_id")
    thread = body.get("thread_id", "main")
    session_id = body.get("session_id")
    if session_id is not None and (not isinstance(session_id, str) or not session_id):
        raise RequestError("session_id must be a non-empty string", param="session_id")
    priority = body.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise RequestError("priority must be an integer", param="priority")
    return ParsedRequest(prompt, params, stream, bool(options.get("include_usage")),
                         program_id, str(thread), tool_mode=bool(tools),
                         session_id=session_id, priority=priority)


#: Headers that name the program when neither ours nor a body field does, in order:
#: vLLM's session header and llm-d's fairness id (gateways forward it per tenant/session).
SESSION_HEADERS = ("x-session-id", "x-gateway-inference-fairness-id")
#: vLLM's priority header; it overrides the body's ``priority`` (as in ``vllm serve``).
PRIORITY_HEADER = "x-vllm-priority"


def program_identity(headers: Any, program_header: str, parsed: ParsedRequest) -> str | None:
    """The program a call belongs to: our header, our ``program_id`` body field, vLLM's
    body ``session_id``, the ``X-Session-ID`` header, llm-d's fairness id; else None."""
    for value in (headers.get(program_header), parsed.program_id, parsed.session_id,
                  *(headers.get(h) for h in SESSION_HEADERS)):
        if value:
            return value
    return None


def call_priority(headers: Any, parsed: ParsedRequest) -> int:
    """The call's priority: vLLM's ``X-Vllm-Priority`` header, else the body field."""
    raw = headers.get(PRIORITY_HEADER)
    if raw is None:
        return parsed.priority
    try:
        return int(raw)
    except ValueError:
        raise RequestError(f"{PRIORITY_HEADER} must be an integer", param="priority") from None


def _tools(body: dict) -> tuple[list[dict], bool]:
    """(the tools the output may call, whether a plain answer is allowed)."""
    tools = body.get("tools")
    if tools is None:
        return [], True
    if not isinstance(tools, list):
        raise RequestError("tools must be a list", param="tools")
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if (not isinstance(function, dict) or tool.get("type", "function") != "function"
                or not isinstance(function.get("name"), str) or not function["name"]):
            raise RequestError("each tool must be {'type': 'function', 'function': "
                               "{'name': ..., 'parameters': {...}}}", param="tools")
        if not isinstance(function.get("parameters", {}), dict):
            raise RequestError("tool parameters must be a JSON schema object", param="tools")
    try:
        return tool_envelope.selected_tools(tools, body.get("tool_choice"))
    except ValueError as e:
        raise RequestError(str(e), param="tool_choice") from None


def _messages(body: dict) -> list[dict[str, str]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages must be a non-empty list", param="messages")
    out = []
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise RequestError("each message needs a string role", param="messages")
        content = m.get("content")
        if m["role"] == "assistant" and m.get("tool_calls"):
            content = _rendered_calls(m["tool_calls"])
        elif content is None and m["role"] == "assistant":
            content = ""
        if isinstance(content, list):
            texts = [p.get("text") for p in content if isinstance(p, dict)]
            if any(p.get("type") != "text" for p in content if isinstance(p, dict)):
                raise RequestError("only text content parts are supported", param="messages")
            content = "".join(t for t in texts if isinstance(t, str))
        if not isinstance(content, str):
            raise RequestError("message content must be text", param="messages")
        out.append({"role": m["role"], "content": content})
    return out


def _rendered_calls(calls: Any) -> str:
    """Earlier tool calls of the assistant, in the envelope the model produces."""
    if not isinstance(calls, list):
        raise RequestError("tool_calls must be a list", param="messages")
    out = []
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise RequestError("each tool call needs a function name", param="messages")
        arguments = function.get("arguments") or "{}"
        try:
            arguments = json.loads(arguments) if isinstance(arguments, str) else arguments
        except json.JSONDecodeError:
            raise RequestError("tool call arguments must be JSON", param="messages") from None
        out.append(tool_envelope.render_call(function["name"], arguments))
    return "\n".join(out)


def _prompt(body: dict) -> str:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str) or not prompt:
        raise RequestError("prompt must be a non-empty string", param="prompt")
    return prompt


def _response_schema(fmt: Any) -> dict | None:
    if fmt is None:
        return None
    if not isinstance(fmt, dict):
        raise RequestError("response_format must be an object", param="response_format")
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise RequestError("response_format.json_schema.schema must be an object",
                               param="response_format")
        return schema
    raise RequestError(f"Unknown response_format type {kind!r}", param="response_format")


def usage(result: CallResult) -> dict[str, Any]:
    u = result.usage
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
            "total_tokens": u.total_tokens,
            "prompt_tokens_details": {"cached_tokens": u.cached_tokens}}


def usage_chunk(result: CallResult, *, chat: bool, model: str, rid: str) -> dict[str, Any]:
    """The final usage chunk of a stream, with the call's statistics as
    ``kv_transfer_params`` (as a stock ``vllm serve`` with our plugin sends them)."""
    body = chunk_body("", None, chat=chat, model=model, rid=rid)
    body["choices"], body["usage"] = [], usage(result)
    body["kv_transfer_params"] = {STATS_KEY: result.stats.to_dict()}
    return body


def tool_message(text: str) -> tuple[dict[str, Any], str | None]:
    """(assistant message, finish reason override) for a tool-mode output."""
    content, calls = tool_envelope.parse_tool_output(text)
    if not calls:
        return {"role": "assistant", "content": content}, None
    return {"role": "assistant", "content": None, "tool_calls": [
        {"id": c["id"], "type": "function",
         "function": {"name": c["name"], "arguments": json.dumps(c["args"])}}
        for c in calls]}, "tool_calls"


def completion_body(result: CallResult, *, chat: bool, model: str, rid: str,
                    tool_mode: bool = False) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "finish_reason": result.finish_reason}
    if chat and tool_mode:
        choice["message"], finish = tool_message(result.text)
        choice["finish_reason"] = finish or result.finish_reason
    elif chat:
        choice["message"] = {"role": "assistant", "content": result.text}
    else:
        choice["text"] = result.text
    return {"id": rid, "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()), "model": model, "choices": [choice],
            "usage": usage(result), "program_id": result.program_id,
            "kv_transfer_params": {STATS_KEY: result.stats.to_dict()}}


def chunk_body(text: str, finish: str | None, *, chat: bool, model: str, rid: str,
               first: bool = False) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
    if chat:
        choice["delta"] = ({"role": "assistant"} if first else {}) | (
            {"content": text} if text or first else {})
    else:
        choice["text"] = text
    return {"id": rid, "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()), "model": model, "choices": [choice]}


def new_id(chat: bool) -> str:
    return ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
