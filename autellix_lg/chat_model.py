"""``AutellixChatModel``: a LangChain chat model served by the program-aware engine."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from operator import itemgetter
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    BaseCallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.chat_models import (
    BaseChatModel,
    LangSmithParams,
    agenerate_from_stream,
    generate_from_stream,
)
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough, ensure_config
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pydantic import ConfigDict, Field, PrivateAttr, SecretStr

from autellix_engine.frontend.chat_render import load_template
from autellix_engine.frontend.engine import AutellixEngine
from autellix_engine.frontend.results import CallResult
from autellix_lg import _convert, programs
from autellix_lg.clients import CallRequest, EmbeddedClient, EngineClient, RemoteClient
from autellix_lg.errors import EngineUnavailableError, for_langchain
from autellix_lg.telemetry import attributes as A
from autellix_lg.telemetry.setup import configure_tracing
from autellix_lg.tool_formats import (
    Envelope,
    FormatChoice,
    NativeParsed,
    NativeRemote,
    ToolFormat,
    ToolFormatName,
    template_takes_tools,
)

PROVIDER = "autellix"
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
#: Errors worth another try when no output was produced yet.


class AutellixChatModel(BaseChatModel):
    """Chat model on the Autellix engine: program-aware scheduling for LangGraph agents.

    Use it wherever ``ChatOpenAI`` is used. Every top-level graph invocation becomes a
    program in the engine's process table; calls from its nodes, subgraphs and tools
    belong to it, and parallel branches are its threads. No other change is needed.

    Example:
        .. code-block:: python

            from autellix_lg import AutellixChatModel

            llm = AutellixChatModel(model="smollm2", policy="atlas", max_tokens=128)
            llm.invoke("What is the capital of France?")

    Engines: by default one embedded engine per process and configuration, built from
    ``model``, ``policy`` and ``engine_config`` on first use; or pass a started
    ``autellix_engine``; or ``base_url`` for a remote Autellix server.
    """

    model_name: str = Field(default="smollm2", alias="model")
    """``"smollm2"``, ``"tiny"``, a local Hugging Face model folder or a Hugging Face
    model id (``"org/name"``, found as vLLM finds it: the hub cache, ``HF_HUB_OFFLINE``)."""
    policy: str = "atlas"
    """Scheduling policy of the embedded engine: fcfs, mlfq, plas or atlas."""
    engine_config: dict[str, Any] = Field(default_factory=dict)
    """Further ``engine.EngineConfig`` fields for the embedded engine."""
    engine: AutellixEngine | None = Field(default=None, exclude=True)
    """A started ``AutellixEngine`` (one replica or many) instead of the embedded default."""
    base_url: str | None = None
    """URL of a remote Autellix server (OpenAI-compatible)."""
    api_key: SecretStr | None = None
    """API key of the remote server."""
    temperature: float | None = None
    max_tokens: int | None = None
    """Output cap per call (None: the engine's default, 256)."""
    stop: list[str] | None = Field(default=None, alias="stop_sequences")
    timeout: float | None = None
    """Seconds a call may take before it is aborted with ``CallTimeoutError``."""
    max_retries: int = 2
    """Retries of a call to a remote server (``base_url``) that failed before producing
    output with a retryable error (timeouts, connection failures, 5xx). An embedded
    engine retries on its replicas itself, so its calls are not retried here."""
    streaming: bool = False
    seed: int | None = None
    top_p: float | None = None
    capture_content: bool = False
    """Record prompts and completions in spans (off: spans carry no text)."""
    tool_format: ToolFormatName = "auto"
    """How bound tools reach the model: ``"native"`` (the model's chat template renders
    them and vLLM's ``tool_parser`` reads its calls, as ``vllm serve
    --enable-auto-tool-choice``; a remote server uses its own template and parser),
    ``"envelope"`` (a JSON envelope, guided: any model, also one without a tool format)
    or ``"auto"`` (default): native when ``tool_parser`` is set and the chat template
    renders tools, else the envelope."""
    chat_template: str | None = None
    """The chat template of this model's calls (Jinja text or a file path, as ``vllm
    serve --chat-template``); None: the engine's."""
    tool_parser: str | None = None
    """vLLM's tool parser for the model's format (``vllm serve --tool-call-parser``:
    ``"hermes"`` for Qwen 2.5 and Hermes, ``"llama3_json"``, ``"mistral"``, ...)."""

    model_config = ConfigDict(populate_by_name=True, arbitrary_types_allowed=True)
    _client: EngineClient | None = PrivateAttr(default=None)
    _parser_cls: type | None = PrivateAttr(default=None)

    def model_post_init(self, context: Any, /) -> None:
        programs.install()
        configure_tracing(only_if_env=True)
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if self.tool_format not in ("auto", "native", "envelope"):
            raise ValueError(f"tool_format must be auto, native or envelope, "
                             f"got {self.tool_format!r}")
        if self.tool_format == "native" and self.tool_parser is None and not self.base_url:
            raise ValueError("tool_format='native' needs tool_parser (vLLM's parser of the "
                             "model's tool format, e.g. 'hermes')")

    # -- LangChain metadata -------------------------------------------------------------
    @property
    def _llm_type(self) -> str:
        return "autellix-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "policy": self.policy,
                "base_url": self.base_url, **self._default_params()}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(ls_provider=PROVIDER,
                                 ls_model_name=kwargs.get("model", self.model_name),
                                 ls_model_type="chat")
        if (t := kwargs.get("temperature", self.temperature)) is not None:
            params["ls_temperature"] = t
        if (m := kwargs.get("max_tokens", self.max_tokens)) is not None:
            params["ls_max_tokens"] = m
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    def _default_params(self) -> dict[str, Any]:
        params = {"temperature": self.temperature, "max_tokens": self.max_tokens,
                  "seed": self.seed, "top_p": self.top_p}
        return {k: v for k, v in params.items() if v is not None}

    # -- tools and structured output -----------------------------------------------------
    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable | BaseTool],
        *,
        tool_choice: dict | str | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, BaseMessage]:
        """Bind tools; the engine's guided decoding makes every call match its schema.

        Args:
            tools: tools as dicts, pydantic models, functions or ``BaseTool``s.
            tool_choice: ``"auto"`` (default: call a tool or answer), ``"any"`` /
                ``"required"`` / ``True`` (must call a tool), ``"none"``, or a tool name.
        """
        formatted = [_validated_tool(convert_to_openai_tool(t)) for t in tools]
        if tool_choice is not None:
            _convert.selected_tools(formatted, tool_choice)  # raises for unknown names
        return super().bind(tools=formatted, tool_choice=tool_choice, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        method: str = "json_schema",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict | Any]:
        """Outputs parsed into ``schema``.

        Args:
            method: ``"json_schema"`` (default; guided decoding on the schema),
                ``"function_calling"`` (a forced tool call) or ``"json_mode"`` (any
                JSON object).
        """
        if method == "function_calling":
            return super().with_structured_output(schema, include_raw=include_raw, **kwargs)
        if kwargs:
            raise ValueError(f"Received unsupported arguments {kwargs}")
        is_pydantic = isinstance(schema, type) and is_basemodel_subclass(schema)
        if method == "json_schema":
            json_schema = _json_schema_of(schema)
        elif method == "json_mode":
            json_schema = {"type": "object"}
        else:
            raise ValueError(f"Unknown method {method!r}: json_schema, function_calling, json_mode")
        llm = self.bind(
            response_schema=json_schema,
            ls_structured_output_format={"kwargs": {"method": method}, "schema": schema},
        )
        parser = PydanticOutputParser(pydantic_object=schema) if is_pydantic else JsonOutputParser()
        if not include_raw:
            return llm | parser
        parse = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser,
                                           parsing_error=lambda _: None)
        fallback = RunnablePassthrough.assign(parsed=lambda _: None)
        return RunnableMap(raw=llm) | parse.with_fallbacks([fallback],
                                                           exception_key="parsing_error")

    # -- generation ------------------------------------------------------------------------
    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None,
                  **kwargs: Any) -> ChatResult:
        return generate_from_stream(self._stream(messages, stop=stop, **kwargs))

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None,
                         **kwargs: Any) -> ChatResult:
        return await agenerate_from_stream(self._astream(messages, stop=stop, **kwargs))

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None,
                **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        call = _Call(self, messages, stop, kwargs)
        for attempt in range(self._attempts()):
            try:
                for chunk in call.client().stream(call.request, self.timeout):
                    yield from call.on_chunk(chunk)
                break
            except BaseException as e:
                self._on_failure(call, e, attempt)
        yield call.finish()

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None,
                       **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        call = _Call(self, messages, stop, kwargs)
        for attempt in range(self._attempts()):
            try:
                client = await _to_thread_if_embedded_start(self, call)
                async for chunk in client.astream(call.request, self.timeout):
                    for out in call.on_chunk(chunk):
                        yield out
                break
            except BaseException as e:
                self._on_failure(call, e, attempt)
        yield call.finish()

    def _attempts(self) -> int:
        """One retry layer per hop: a remote server's hop is retried here; an embedded
        engine retries on its replicas itself (``EngineConfig.call_attempts``)."""
        return self.max_retries + 1 if self.base_url and self.engine is None else 1

    def _on_failure(self, call: _Call, error: BaseException, attempt: int) -> None:
        """Return to retry the call; else end its span and raise LangChain's error."""
        converted = for_langchain(error)
        if (getattr(converted, "is_retryable", False) and not call.started
                and attempt + 1 < self._attempts()):
            return
        if isinstance(converted, EngineUnavailableError) and self.engine is None:
            self._client = None  # the next call finds the process's engine again
        call.fail(converted)
        if converted is error:
            raise error
        raise converted from error

    def _tool_format_for(self, client: EngineClient, messages: list[BaseMessage],
                         tools: list[dict] | None, tool_choice: Any,
                         response_schema: dict | None) -> ToolFormat:
        """The tool format of a call (``tool_format``), for the client it goes to."""
        callable_tools, _ = _convert.selected_tools(tools or [], tool_choice)
        envelope = Envelope(messages, tools, tool_choice, response_schema)
        choice = FormatChoice(self.tool_format, self.tool_parser)
        if not callable_tools:
            return envelope
        if isinstance(client, RemoteClient):
            return NativeRemote(messages, tools, tool_choice) if (
                choice.native_for_remote()) else envelope
        if not isinstance(client, EmbeddedClient):
            return envelope
        template = (load_template(self.chat_template) if self.chat_template
                    else client.engine.chat_template)
        if not choice.native_for_engine(template):
            return envelope
        if not template_takes_tools(template):
            raise ValueError(f"tool_format='native': the chat template of {self.model_name!r} "
                             "does not render tools; set chat_template to one that does, or "
                             "use the envelope")
        return NativeParsed(self.model_name, messages, tools, tool_choice,
                            self._parser_class(client), client.engine.tokenizer)

    def _parser_class(self, client: EmbeddedClient) -> type:
        """vLLM's parser for ``tool_parser`` (its ``ParserManager``, as ``vllm serve``)."""
        from vllm.parser import ParserManager

        if self._parser_cls is None:
            self._parser_cls = ParserManager.get_parser(
                tool_parser_name=self.tool_parser, enable_auto_tools=True,
                model_name=self.model_name, tokenizer=client.engine.tokenizer)
        return self._parser_cls

    # -- engines ----------------------------------------------------------------------------
    def embedded_engine(self) -> AutellixEngine | None:
        """The in-process engine this model calls (started on first use; shared by every
        model of the same configuration): for its queries (``programs()``,
        ``program_stats(id)``, ...). None for a remote server (``base_url``)."""
        client = self._resolve_client()
        return client.engine if isinstance(client, EmbeddedClient) else None

    def _resolve_client(self) -> EngineClient:
        if self._client is not None:
            return self._client
        if self.engine is not None:
            client: EngineClient = EmbeddedClient(self.engine)
        elif self.base_url:
            key = self.api_key.get_secret_value() if self.api_key else None
            client = RemoteClient(self.base_url, key, self.model_name, self.policy)
        else:
            from autellix_engine.frontend.config import EngineConfig

            config = EngineConfig(model=self.model_name, policy=self.policy, **self.engine_config)
            client = EmbeddedClient.from_config(config)
        self._client = client
        return client


async def _to_thread_if_embedded_start(model: AutellixChatModel, call: _Call) -> EngineClient:
    """Resolve the client; the first embedded start blocks ~30 s, so off the loop."""
    if model._client is None and model.engine is None and not model.base_url:
        import asyncio

        await asyncio.to_thread(model._resolve_client)
    return call.client()


class _Call:
    """One model call: request building, span, chunk conversion, final chunk."""

    def __init__(self, model: AutellixChatModel, messages: list[BaseMessage],
                 stop: list[str] | None, kwargs: dict[str, Any]) -> None:
        self.model = model
        self.started = False
        self.text: list[str] = []
        self.streamed: list[str] = []
        self.result: CallResult | None = None
        self.tools = kwargs.pop("tools", None)
        self.tool_choice = kwargs.pop("tool_choice", None)
        self.response_schema = kwargs.pop("response_schema", None)
        kwargs.pop("ls_structured_output_format", None)
        kwargs.pop("stream", None)
        requested = kwargs.pop("model", model.model_name)
        if requested != model.model_name:
            msg = f"This engine serves {model.model_name!r}; a call cannot ask for {requested!r}"
            raise ValueError(msg)
        _convert.selected_tools(self.tools or [], self.tool_choice)  # unknown names raise
        self.messages = messages
        self.params = {**model._default_params(), **kwargs}
        if stop or model.stop:
            self.params["stop"] = stop or model.stop
        self.format: ToolFormat | None = None  # chosen with the client (``client()``)
        self.request: CallRequest | None = None
        config = ensure_config()
        metadata = config.get("metadata") or {}
        callbacks = config.get("callbacks")
        is_manager = isinstance(callbacks, BaseCallbackManager)
        self.enclosing = callbacks.parent_run_id if is_manager else None
        handler = programs.handler()
        ctx = handler.call_context(self.enclosing, metadata.get(programs.PROGRAM_ID_KEY))
        self.thread = str(metadata.get("langgraph_checkpoint_ns")
                          or metadata.get("langgraph_node") or "main")
        self.span = self._start_span(ctx, self.params)
        carrier: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(carrier, trace.set_span_in_context(self.span))
        self.carrier = carrier
        self.program_id = ctx.program_id

    def client(self) -> EngineClient:
        client = self.model._resolve_client()
        if self.request is None:
            self.format = self.model._tool_format_for(client, self.messages, self.tools,
                                                      self.tool_choice, self.response_schema)
            params = {**self.params, **self.format.guided}
            self.request = CallRequest(self.format.messages, self.program_id, self.thread,
                                       params, self.carrier, self.format.tools,
                                       self.format.tool_choice, self.model.chat_template)
            if self.model.capture_content:
                self.span.set_attribute(A.INPUT_MESSAGES, _json(self.format.messages))
        programs.handler().record_call(self.enclosing, client, self.thread)
        return client

    def _start_span(self, ctx: programs.CallContext, params: dict) -> trace.Span:
        attrs: dict[str, Any] = {
            A.OPERATION: "chat", A.PROVIDER: PROVIDER, A.REQUEST_MODEL: self.model.model_name,
            A.POLICY: self.model.policy, A.THREAD_ID: self.thread,
        }
        if ctx.program_id:
            attrs[A.PROGRAM_ID] = ctx.program_id
        if "max_tokens" in params:
            attrs[A.REQUEST_MAX_TOKENS] = params["max_tokens"]
        if "temperature" in params:
            attrs[A.REQUEST_TEMPERATURE] = params["temperature"]
        parent = trace.set_span_in_context(ctx.parent_span) if ctx.parent_span else None
        tracer = trace.get_tracer("autellix_lg")
        return tracer.start_span(f"chat {self.model.model_name}", context=parent,
                                 kind=SpanKind.CLIENT, attributes=attrs)

    def on_chunk(self, chunk) -> Iterator[ChatGenerationChunk]:
        self.started = True
        self.text.append(chunk.text)
        if chunk.result is not None:
            self.result = chunk.result
        assert self.format is not None
        text = self.format.visible(chunk)
        if text:
            self.streamed.append(text)
            yield ChatGenerationChunk(message=AIMessageChunk(content=text))

    def finish(self) -> ChatGenerationChunk:
        """The last chunk: tool calls (if any), usage and response metadata."""
        assert self.format is not None
        text = "".join(self.text)
        content, tool_calls = self.format.finish(text, self.result)
        sent = "".join(self.streamed)
        if content.startswith(sent):
            content = content[len(sent):]  # the rest: chunks add up to the answer
        res = self.result
        finish_reason = res.finish_reason if res else "stop"
        if tool_calls:
            finish_reason = "tool_calls"
        usage = None
        if res is not None:
            u = res.usage
            usage = {"input_tokens": u.prompt_tokens, "output_tokens": u.completion_tokens,
                     "total_tokens": u.total_tokens,
                     "input_token_details": {"cache_read": u.cached_tokens}}
        meta = {"model_name": self.model.model_name, "finish_reason": finish_reason,
                "model_provider": PROVIDER}
        if self.program_id:
            meta["program_id"] = self.program_id
        message = AIMessageChunk(
            content=content,
            tool_call_chunks=[
                tool_call_chunk(name=c.name, args=c.arguments, id=c.id, index=i)
                for i, c in enumerate(tool_calls)
            ],
            usage_metadata=usage,
            response_metadata=meta,
            chunk_position="last",
        )
        self._end_span(res, finish_reason, text)
        info = {"finish_reason": finish_reason}
        return ChatGenerationChunk(message=message, generation_info=info)

    def _end_span(self, res: CallResult | None, finish_reason: str, text: str) -> None:
        span = self.span
        span.set_attribute(A.RESPONSE_MODEL, self.model.model_name)
        span.set_attribute(A.RESPONSE_FINISH_REASONS, [finish_reason])
        if res is not None:
            span.set_attributes({
                A.CALL_ID: res.call_id, A.USAGE_INPUT_TOKENS: res.usage.prompt_tokens,
                A.USAGE_OUTPUT_TOKENS: res.usage.completion_tokens,
                **A.call_stats(res.stats),
            })
            if res.time_to_first_token_s is not None:
                span.set_attribute(A.TIME_TO_FIRST_TOKEN_S, res.time_to_first_token_s)
            if res.policy:  # what the engine ran (a remote server's, not ours)
                span.set_attribute(A.POLICY, res.policy)
            if res.program_id and not self.program_id:
                span.set_attribute(A.PROGRAM_ID, res.program_id)
        if self.model.capture_content:
            span.set_attribute(A.OUTPUT_MESSAGES, text)
        span.end()

    def fail(self, error: BaseException) -> None:
        programs._mark_error(self.span, error)
        self.span.end()


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


def _validated_tool(tool: dict[str, Any]) -> dict[str, Any]:
    function = tool.get("function") or {}
    name = function.get("name")
    if not isinstance(name, str) or not _TOOL_NAME.match(name):
        raise ValueError(f"Invalid tool name {name!r}: use 1-64 letters, digits, _ or -")
    params = function.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(params, dict) or params.get("type", "object") != "object":
        raise ValueError(f"Tool {name!r}: parameters must be a JSON schema of type object")
    if not isinstance(params.get("properties", {}), dict):
        raise ValueError(f"Tool {name!r}: 'properties' must be an object")
    return tool


def _json_schema_of(schema: dict[str, Any] | type) -> dict[str, Any]:
    if isinstance(schema, type) and is_basemodel_subclass(schema):
        if hasattr(schema, "model_json_schema"):
            return schema.model_json_schema()
        return convert_to_openai_tool(schema)["function"]["parameters"]  # pydantic.v1
    if isinstance(schema, dict):
        if "parameters" in schema or "function" in schema:  # an OpenAI tool/function
            return convert_to_openai_tool(schema)["function"]["parameters"]
        if "properties" in schema or "type" in schema:
            return {k: v for k, v in schema.items() if k not in ("title", "description")} | (
                {"type": schema.get("type", "object")})
        return convert_to_openai_tool(schema)["function"]["parameters"]
    return convert_to_openai_tool(schema)["function"]["parameters"]
