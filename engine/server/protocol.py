"""OpenAI wire format: request validation and response bodies (pure)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from autellix_engine.core.wire import SERVER_KEY, STATS_KEY
from autellix_engine.frontend import tool_envelope
from autellix_engine.frontend.results import CallResult, TokenLogprob
from autellix_engine.frontend.sampling import SAMPLING_KEYS
from autellix_engine.server.body import check_id, load_json
from autellix_engine.server.errors import RequestError


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
    n: int = 1  # choices: parallel threads of the call's program


#: The most choices one request may ask for (``n``).
MAX_CHOICES = 16
#: Fields vLLM serves that this server does not yet: a clear 400, never silently ignored.
UNSUPPORTED = ("echo", "best_of", "suffix", "prompt_logprobs")
#: The most alternatives per token a request may ask for (vLLM's ``max_logprobs``).
MAX_LOGPROBS = 20


def parse_request(body: Any, *, chat: bool, model: str, max_tokens_limit: int) -> ParsedRequest:
    """Validate a ``/v1/chat/completions`` or ``/v1/completions`` body completely.

    First with vLLM's own request models (what ``vllm serve`` accepts, with its bounds),
    then with this server's stricter rules (real booleans, well-formed content parts,
    bounded ids). Raises ``RequestError`` (a 4xx) before any state changes.
    """
    if not isinstance(body, dict):
        raise RequestError("The request body must be a JSON object")
    validated = _vllm_validate(body, chat)
    if body.get("model") not in (None, model):
        raise RequestError(f"The model {body.get('model')!r} does not exist; this server "
                           f"serves {model!r}", param="model", status=404,
                           code="model_not_found")
    for name in UNSUPPORTED:
        if body.get(name) not in (None, False, 0):
            raise RequestError(f"{name} is not supported by this server", param=name)
    n = 1 if body.get("n") is None else body["n"]
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_CHOICES:
        raise RequestError(f"n must be an integer in [1, {MAX_CHOICES}]", param="n")
    prompt = _messages(body) if chat else _prompt(body)
    tools, allow_text = _tools(body) if chat else ([], True)
    params = _sampling(body, validated, max_tokens_limit)
    logprobs = _logprobs(body, chat)
    if logprobs is not None:
        params["logprobs"] = logprobs
    schema = _response_schema(body.get("response_format"))
    if tools:
        if schema is not None:
            raise RequestError("tools and response_format cannot be combined", param="tools")
        # On by default, as in OpenAI; a named function is called once.
        parallel = _flag(body, "parallel_tool_calls", default=True) and not (
            tool_envelope.names_a_function(body.get("tool_choice")))
        prompt = tool_envelope.with_tools_note(prompt, tools, allow_text, parallel)
        schema = tool_envelope.tool_output_schema(tools, allow_text, parallel)
    if schema is not None:
        params["json_schema"] = schema
    stream = _flag(body, "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise RequestError("stream_options must be an object", param="stream_options")
    include_usage = _flag(options, "include_usage", param="stream_options.include_usage")
    program_id = body.get("program_id")
    if program_id is not None:
        check_id(program_id, "program_id")
    thread = check_id(body.get("thread_id", "main"), "thread_id")
    session_id = body.get("session_id")
    if session_id is not None:
        check_id(session_id, "session_id")
    if body.get("user") is not None:
        check_id(body["user"], "user")  # accepted, as OpenAI's abuse-tracking hint
    remaining = body.get("remaining_work")  # the srpt yardstick's hint (benchmarks)
    if remaining is not None:
        if isinstance(remaining, bool) or not isinstance(remaining, int | float) or remaining < 0:
            raise RequestError("remaining_work must be a number >= 0", param="remaining_work")
        params["remaining_work"] = float(remaining)
    priority = body.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int) or not (
            -(2**31) <= priority < 2**31):
        raise RequestError("priority must be a 32-bit integer", param="priority")
    if n > 1 and stream and tools:
        raise RequestError("n > 1 with tools cannot stream (a tool answer is sent whole)",
                           param="n")
    return ParsedRequest(prompt, params, stream, include_usage, program_id, thread,
                         tool_mode=bool(tools), session_id=session_id, priority=priority, n=n)


def _vllm_validate(body: dict, chat: bool) -> Any:
    """vLLM's own request model: what ``vllm serve`` accepts, with its bounds.

    Returns the validated model: its values are the ones ``vllm serve`` would use
    (pydantic's lax mode turns ``"seed": "123"`` into ``123``), and only they go on.
    """
    import pydantic
    from vllm.exceptions import VLLMClientError

    if chat:
        from vllm.entrypoints.openai.chat_completion.protocol import (
            ChatCompletionRequest as Model,
        )
    else:
        from vllm.entrypoints.openai.completion.protocol import CompletionRequest as Model
    fields = {k: v for k, v in body.items() if k in Model.model_fields}
    try:
        return Model.model_validate({"model": "any", **fields})
    except pydantic.ValidationError as e:
        error = e.errors()[0]
        loc = [str(p) for p in error["loc"] if not str(p).startswith("function-")]
        # vLLM validates some fields in nested steps whose paths start below the field.
        field = next((p for p in loc if p in Model.model_fields), None)
        if field is None and chat:
            field = "messages"
        raise RequestError(f"{'.'.join(loc)}: {error['msg']}", param=field) from None
    except (ValueError, TypeError, VLLMClientError) as e:  # raised by vLLM's validators
        raise RequestError(str(e), param=getattr(e, "parameter", None)) from None
    except Exception as e:  # noqa: BLE001 - a vLLM validator that trips on odd input
        # (AttributeError on "structured_outputs": "x"): the input is what is wrong.
        raise RequestError(f"The request is malformed ({type(e).__name__}: {e})") from None


def _flag(body: dict, name: str, param: str | None = None, default: bool = False) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise RequestError(f"{param or name} must be true or false", param=param or name)
    return value


def _sampling(body: dict, validated: Any, max_tokens_limit: int) -> dict[str, Any]:
    """The call's sampling settings, by vLLM's names (``autellix_engine.frontend.sampling``).

    Values come from vLLM's validated request model, never from the raw body, so each
    goes on once, in the type the engine expects. Per kind of field:

    - numbers: a JSON number, or a string vLLM's model reads as one (``"123"``,
      ``"0.5"``), coerced as ``vllm serve`` does; ``true``/``false`` are refused;
    - booleans (``ignore_eos``, ...): ``true`` or ``false`` only (vLLM would also read
      ``1``, ``"yes"``: refused here, as for ``stream``).
    """
    given = validated.model_fields_set
    params: dict[str, Any] = {}
    name = "max_completion_tokens" if "max_completion_tokens" in given else "max_tokens"
    max_tokens = _typed(body, validated, name)
    if max_tokens is not None:
        if max_tokens < 1:
            raise RequestError("max_tokens must be a positive integer", param="max_tokens")
        if max_tokens > max_tokens_limit:
            raise RequestError(f"max_tokens may be at most {max_tokens_limit}",
                               param="max_tokens")
        params["max_tokens"] = max_tokens
    for name in SAMPLING_KEYS:
        if name != "logprobs":  # OpenAI's shape differs: _logprobs
            value = _typed(body, validated, name)
            if value is not None:
                params[name] = value
    stop = params.get("stop")
    if stop is not None:
        stop = [stop] if isinstance(stop, str) else stop
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise RequestError("stop must be a string or a list of strings", param="stop")
        params["stop"] = stop
    bias = params.get("logit_bias")
    if bias is not None:
        params["logit_bias"] = _logit_bias(bias)
    return params


def _typed(body: dict, validated: Any, name: str) -> Any:
    """A field's value as vLLM's model validated it (None: not given)."""
    if name not in validated.model_fields_set:
        return None
    value = validated.__dict__[name]  # not getattr: vLLM marks max_tokens deprecated
    raw = body.get(name)
    if isinstance(value, bool) and not isinstance(raw, bool):
        raise RequestError(f"{name} must be true or false", param=name)
    if isinstance(raw, bool) and not isinstance(value, bool):
        raise RequestError(f"{name} must be a number", param=name)
    return value


def _logprobs(body: dict, chat: bool) -> int | None:
    """Alternatives per token to return (None: no logprobs). Chat: ``logprobs: true``
    with ``top_logprobs: k``; completions: ``logprobs: k``."""
    if chat:
        wanted, top = _flag(body, "logprobs"), body.get("top_logprobs")
        if top is not None and not wanted:
            raise RequestError("top_logprobs needs logprobs: true", param="top_logprobs")
        if not wanted:
            return None
        name, k = "top_logprobs", 0 if top is None else top
    else:
        name, k = "logprobs", body.get("logprobs")
        if k is None:
            return None
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= MAX_LOGPROBS:
        raise RequestError(f"{name} must be an integer in [0, {MAX_LOGPROBS}]", param=name)
    return k


def logprobs_body(logprobs: tuple[TokenLogprob, ...], *, chat: bool,
                  decode: Callable[[int], str], offset: int = 0) -> dict[str, Any] | None:
    """OpenAI's ``logprobs`` of a choice (chat: per-token objects; completions: the
    legacy parallel lists, ``text_offset`` from ``offset``)."""
    if not logprobs:
        return None
    if chat:
        def entry(token_id: int, logprob: float) -> dict[str, Any]:
            text = decode(token_id)
            return {"token": text, "logprob": logprob, "bytes": list(text.encode())}

        return {"content": [{**entry(lp.token_id, lp.logprob),
                             "top_logprobs": [entry(t, v) for t, v in lp.top]}
                            for lp in logprobs], "refusal": None}
    tokens = [decode(lp.token_id) for lp in logprobs]
    offsets = []
    for token in tokens:
        offsets.append(offset)
        offset += len(token)
    return {"tokens": tokens, "token_logprobs": [lp.logprob for lp in logprobs],
            "top_logprobs": [{decode(t): v for t, v in lp.top} for lp in logprobs],
            "text_offset": offsets}


def _logit_bias(bias: Any) -> dict[int, float]:
    """OpenAI's ``{"token id": bias}`` with biases in [-100, 100]."""
    if not isinstance(bias, dict):
        raise RequestError("logit_bias must be an object", param="logit_bias")
    out = {}
    for key, value in bias.items():
        try:
            token = int(key)
        except ValueError:
            raise RequestError("logit_bias keys must be token ids", param="logit_bias") from None
        if isinstance(value, bool) or not isinstance(value, int | float) or not (
                -100 <= value <= 100):
            raise RequestError("logit_bias values must be numbers in [-100, 100]",
                               param="logit_bias")
        out[token] = float(value)
    return out


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
            return check_id(value, "program id")
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
            if not all(isinstance(p, dict) and p.get("type") == "text"
                       and isinstance(p.get("text"), str) for p in content):
                raise RequestError("content parts must be {'type': 'text', 'text': '...'} "
                                   "(only text is supported)", param="messages")
            content = "".join(p["text"] for p in content)
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
        if isinstance(arguments, str):
            arguments = load_json(arguments.encode("utf-8", "surrogatepass"),
                                  "A tool call's arguments")
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
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise RequestError("response_format.json_schema.schema must be an object",
                               param="response_format")
        return schema
    raise RequestError(f"Unknown response_format type {kind!r}", param="response_format")


def usage(result: CallResult, more: tuple[CallResult, ...] = ()) -> dict[str, Any]:
    """OpenAI's usage: the prompt once, the completions of every choice."""
    u = result.usage
    completion = u.completion_tokens + sum(r.usage.completion_tokens for r in more)
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": completion,
            "total_tokens": u.prompt_tokens + completion,
            "prompt_tokens_details": {"cached_tokens": u.cached_tokens}}


def usage_chunk(result: CallResult, *, chat: bool, model: str, rid: str, policy: str,
                more: tuple[CallResult, ...] = ()) -> dict[str, Any]:
    """The final usage chunk of a stream, with the call's statistics as
    ``kv_transfer_params`` (as a stock ``vllm serve`` with our plugin sends them);
    ``more``: the other choices' calls (their completion tokens count too)."""
    body = chunk_body("", None, chat=chat, model=model, rid=rid)
    body["choices"], body["usage"] = [], usage(result, more)
    body["kv_transfer_params"] = {STATS_KEY: result.stats.to_dict()}
    body[SERVER_KEY] = {"policy": policy}
    return body


def tool_message(text: str) -> tuple[dict[str, Any], str | None]:
    """(assistant message, finish reason override) for a tool-mode output."""
    content, calls = tool_envelope.parse_tool_output(text)
    if not calls:
        return {"role": "assistant", "content": content, "refusal": None}, None
    return {"role": "assistant", "content": None, "refusal": None, "tool_calls": [
        {"id": c["id"], "type": "function",
         "function": {"name": c["name"], "arguments": json.dumps(c["args"])}}
        for c in calls]}, "tool_calls"


def completion_body(results: CallResult | list[CallResult], *, chat: bool, model: str,
                    rid: str, policy: str, tool_mode: bool = False,
                    decode: Callable[[int], str] = str) -> dict[str, Any]:
    """A non-streamed response; several results are the choices of ``n``."""
    results = results if isinstance(results, list) else [results]
    first = results[0]
    return {"id": rid, "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()), "model": model,
            "choices": [_choice(r, i, chat, tool_mode, decode) for i, r in enumerate(results)],
            "usage": usage(first, tuple(results[1:])), "program_id": first.program_id,
            "kv_transfer_params": {STATS_KEY: first.stats.to_dict()},
            SERVER_KEY: {"policy": policy}}


def _choice(result: CallResult, index: int, chat: bool, tool_mode: bool,
            decode: Callable[[int], str]) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": index, "finish_reason": result.finish_reason,
                              "logprobs": logprobs_body(result.logprobs, chat=chat,
                                                        decode=decode)}
    if chat and tool_mode:
        choice["message"], finish = tool_message(result.text)
        choice["finish_reason"] = finish or result.finish_reason
    elif chat:
        choice["message"] = {"role": "assistant", "content": result.text, "refusal": None}
    else:
        choice["text"] = result.text
    return choice


def chunk_body(text: str, finish: str | None, *, chat: bool, model: str, rid: str,
               first: bool = False, logprobs: dict[str, Any] | None = None,
               index: int = 0) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": index, "finish_reason": finish, "logprobs": logprobs}
    if chat:
        choice["delta"] = ({"role": "assistant"} if first else {}) | (
            {"content": text} if text or first else {})
    else:
        choice["text"] = text
    return {"id": rid, "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()), "model": model, "choices": [choice]}


def new_id(chat: bool) -> str:
    return ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
