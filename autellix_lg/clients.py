"""How ``AutellixChatModel`` reaches an engine: embedded (in this process) or remote.

Both implement :class:`EngineClient`: stream one call, start and end programs. The
embedded client bridges any caller (sync code, or async code on another event loop)
to the engine's own loop; vLLM's ``AsyncLLM`` is bound to the loop that started it.
"""

from __future__ import annotations

import asyncio
import atexit
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from autellix_engine.core.errors import AutellixError
from autellix_engine.core.wire import POLICY_HEADER, STATS_KEY
from autellix_engine.frontend import openai_http
from autellix_engine.frontend.config import EngineConfig
from autellix_engine.frontend.engine import AutellixEngine
from autellix_engine.frontend.openai_http import Failure
from autellix_engine.frontend.results import StreamChunk
from autellix_lg.errors import (
    CallTimeoutError,
    EngineFailedError,
    EngineUnavailableError,
    InvalidCallError,
    UnknownModelError,
)


@dataclass(frozen=True, slots=True)
class CallRequest:
    """One chat call, engine-agnostic."""

    messages: list[dict[str, str]]
    program_id: str | None
    thread: str
    params: dict[str, Any]  # sampling params incl. max_tokens, json_schema
    trace_context: dict[str, str] = field(default_factory=dict)
    #: OpenAI tool definitions for the chat template (native tool calling), else None.
    tools: list[dict[str, Any]] | None = None
    #: OpenAI ``tool_choice`` for a server that parses tool calls itself.
    tool_choice: str | dict[str, Any] | None = None
    #: The chat template of this call (None: the engine's).
    chat_template: str | None = None


class EngineClient(Protocol):
    """What the chat model needs from an engine."""

    model_name: str
    policy: str
    #: Which process table the client reaches (two clients with one key share the
    #: table: a program ends once however many model objects called it).
    key: tuple[str, ...]

    def astream(self, request: CallRequest, timeout: float | None) -> AsyncIterator[StreamChunk]:
        ...

    def stream(self, request: CallRequest, timeout: float | None) -> Iterator[StreamChunk]:
        ...

    def start_program(self, program_id: str) -> None:
        ...

    def end_program(self, program_id: str) -> None:
        ...


# --- embedded ------------------------------------------------------------------------
class _EngineHost:
    """A daemon thread running the event loop of engines the chat model builds itself
    (one engine per distinct configuration per process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._engines: dict[str, AutellixEngine] = {}

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=_run_engine_loop, args=(loop,), name="autellix-engine",
                             daemon=True).start()
            self._loop = loop
        return self._loop

    def engine(self, config: EngineConfig) -> AutellixEngine:
        key = repr(config)
        with self._lock:
            eng = self._engines.get(key)
            if eng is None or not eng.is_running:
                loop = self._ensure_loop()
                eng = AutellixEngine(config)
                try:
                    asyncio.run_coroutine_threadsafe(eng.start(), loop).result()
                except Exception as e:
                    if isinstance(e, AutellixError):
                        raise
                    raise EngineUnavailableError(f"The embedded engine failed to start: {e}") from e
                self._engines[key] = eng
                # Run before vLLM's own exit hooks (registered during start; atexit is
                # LIFO), so engines close while their output handlers can still stop.
                atexit.unregister(self.close)
                atexit.register(self.close)
            return eng

    def close(self) -> None:
        with self._lock:
            engines, self._engines = list(self._engines.values()), {}
        for eng in engines:
            if self._loop is not None and self._loop.is_running():
                asyncio.run_coroutine_threadsafe(eng.aclose(), self._loop).result(timeout=60)


ENGINE_HOST = _EngineHost()

_END = object()


def _run_engine_loop(loop: asyncio.AbstractEventLoop) -> None:
    _allow_blocking_in_this_thread()
    loop.run_forever()


def _allow_blocking_in_this_thread() -> None:
    """The engine's loop is ours, not the application's: vLLM's engine start and its
    output handling block (files, sockets) as they do under ``vllm serve``, which
    slows no one else's loop. LangGraph Server's blockbuster fails any blocking call
    on a thread with a running loop and has no public per-thread switch: its
    thread-local skip flag is set for this thread only."""
    try:
        from blockbuster import blockbuster
    except ImportError:
        return
    skip = getattr(blockbuster, "_skip", None)
    if skip is not None:
        skip.value = True


class EmbeddedClient:
    """Calls an in-process ``AutellixEngine`` from any thread or event loop."""

    def __init__(self, engine: AutellixEngine) -> None:
        self.engine = engine
        self.model_name = engine.config.model
        self.key = ("embedded", str(id(engine)))
        self.policy = engine.config.policy

    @classmethod
    def from_config(cls, config: EngineConfig) -> EmbeddedClient:
        """The process-wide engine for ``config``, started on first use."""
        return cls(ENGINE_HOST.engine(config))

    def _producer(self, request: CallRequest) -> Callable[[], AsyncIterator[StreamChunk]]:
        eng = self.engine

        def make() -> AsyncIterator[StreamChunk]:
            if request.program_id is not None:
                eng.ensure_program(request.program_id)
            return eng.stream(
                request.messages, program_id=request.program_id, thread=request.thread,
                trace_context=request.trace_context, tools=request.tools,
                chat_template=request.chat_template, **request.params,
            )

        return make

    def _engine_loop(self) -> asyncio.AbstractEventLoop:
        loop = self.engine.loop
        if loop is None or not self.engine.is_running:
            raise EngineUnavailableError("The engine is not running")
        return loop

    async def astream(
        self, request: CallRequest, timeout: float | None = None
    ) -> AsyncIterator[StreamChunk]:
        """Stream a call from async code (any event loop)."""
        engine_loop = self._engine_loop()
        make = self._producer(request)
        deadline = None if timeout is None else time.monotonic() + timeout
        if asyncio.get_running_loop() is engine_loop:
            agen = make()
            try:
                while True:
                    try:
                        chunk = await _with_deadline(agen.__anext__(), deadline)
                    except StopAsyncIteration:
                        return
                    yield chunk
            finally:
                await agen.aclose()
            return
        caller = asyncio.get_running_loop()
        inbox: asyncio.Queue = asyncio.Queue()
        fut = asyncio.run_coroutine_threadsafe(
            _pump(make, lambda item: caller.call_soon_threadsafe(inbox.put_nowait, item)),
            engine_loop,
        )
        try:
            while (chunk := _unwrap(await _with_deadline(inbox.get(), deadline))) is not None:
                yield chunk
        finally:
            fut.cancel()  # cancels the engine-side task: vLLM aborts the request

    def stream(self, request: CallRequest, timeout: float | None = None) -> Iterator[StreamChunk]:
        """Stream a call from synchronous code."""
        engine_loop = self._engine_loop()
        if _running_loop() is engine_loop:
            msg = "Synchronous calls cannot run on the engine's own event loop; use ainvoke"
            raise RuntimeError(msg)
        inbox: queue.Queue = queue.Queue()
        fut = asyncio.run_coroutine_threadsafe(_pump(self._producer(request), inbox.put),
                                               engine_loop)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    chunk = _unwrap(inbox.get(timeout=wait))
                except queue.Empty:
                    raise CallTimeoutError(f"The call did not finish within {timeout} s") from None
                if chunk is None:
                    return
                yield chunk
        finally:
            fut.cancel()

    def start_program(self, program_id: str) -> None:
        self.engine.ensure_program(program_id)

    def end_program(self, program_id: str) -> None:
        if self.engine.is_program_running(program_id):
            self.engine.end_program(program_id)


def _unwrap(item: Any) -> StreamChunk | None:
    """A pumped item as a chunk; None at the end; an error is raised here."""
    if item is _END:
        return None
    if isinstance(item, BaseException):
        raise item
    return item


async def _pump(make: Callable[[], AsyncIterator[StreamChunk]], put: Callable[[Any], Any]) -> None:
    """Run on the engine loop: forward every chunk, then _END or the error."""
    try:
        async for chunk in make():
            put(chunk)
    except asyncio.CancelledError:
        raise
    except BaseException as e:  # noqa: BLE001 - forwarded to the caller, who raises it
        put(e)
        return
    put(_END)


async def _with_deadline(awaitable, deadline: float | None):
    if deadline is None:
        return await awaitable
    remaining = deadline - time.monotonic()
    try:
        return await asyncio.wait_for(awaitable, max(remaining, 0.0))
    except TimeoutError:
        raise CallTimeoutError("The call did not finish within its timeout") from None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


# --- remote ----------------------------------------------------------------------------
#: Program ends sent to remote servers, one at a time, off the caller's thread.
_ENDER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="autellix-program-end")

class RemoteClient:
    """An Autellix server over HTTP (OpenAI-compatible ``/v1/chat/completions``).

    The client is the ``openai`` package (SSE, error events, connection pooling); its
    own retries are off because the chat model retries calls that returned no output
    (``max_retries``: the one retry layer of this hop). Program and thread ids travel in
    ``X-Autellix-Program-Id`` /
    ``X-Autellix-Thread-Id`` headers and W3C trace context in ``traceparent``; guided
    output as OpenAI's ``response_format`` (json_schema). Errors (``autellix_lg.errors``):
    a 4xx is the call's fault (``InvalidCallError``, not retried); no connection is
    ``EngineUnavailableError``, a 5xx or an error event ``EngineFailedError``, a
    timeout ``CallTimeoutError`` (those three are retryable).
    """

    def __init__(self, base_url: str, api_key: str | None, model_name: str, policy: str) -> None:
        import openai

        self.base_url = base_url.rstrip("/")
        self.model_name = model_name
        self.key = ("remote", self.base_url)
        self.policy = policy
        options = dict(base_url=f"{self.base_url}/v1", api_key=api_key or "EMPTY",
                       max_retries=0)
        self._sync = openai.OpenAI(**options)
        self._async = openai.AsyncOpenAI(**options)

    def _arguments(self, request: CallRequest, timeout: float | None) -> dict[str, Any]:
        headers = dict(request.trace_context)
        if request.program_id:
            headers["X-Autellix-Program-Id"] = request.program_id
        headers["X-Autellix-Thread-Id"] = request.thread
        params = {k: v for k, v in request.params.items() if v is not None}
        schema = params.pop("json_schema", None)
        if schema is not None:
            params["response_format"] = {"type": "json_schema",
                                         "json_schema": {"name": "output", "schema": schema}}
        if request.tools is not None:
            params["tools"] = request.tools
            params["tool_choice"] = request.tool_choice
        if request.chat_template is not None:  # vLLM's request field (a server may refuse it)
            params["chat_template"] = request.chat_template
        return dict(model=self.model_name, messages=request.messages, stream=True,
                    stream_options={"include_usage": True}, extra_headers=headers,
                    extra_body=params, timeout=timeout)

    def stream(self, request: CallRequest, timeout: float | None = None) -> Iterator[StreamChunk]:
        import openai

        result = _ResultBuilder(request)
        try:
            raw = self._sync.chat.completions.with_raw_response.create(
                **self._arguments(request, timeout))
            result.read_headers(raw.headers)
            for chunk in raw.parse():
                yield from result.feed(chunk)
        except openai.OpenAIError as e:
            raise self._error(e, timeout) from e
        yield result.final()

    async def astream(
        self, request: CallRequest, timeout: float | None = None
    ) -> AsyncIterator[StreamChunk]:
        import openai

        result = _ResultBuilder(request)
        try:
            raw = await self._async.chat.completions.with_raw_response.create(
                **self._arguments(request, timeout))
            result.read_headers(raw.headers)
            async for chunk in raw.parse():
                for out in result.feed(chunk):
                    yield out
        except openai.OpenAIError as e:
            raise self._error(e, timeout) from e
        yield result.final()

    def _program_call(self, method: str, program_id: str) -> None:
        import openai

        call = self._sync.put if method == "PUT" else self._sync.delete
        try:
            call(f"/programs/{program_id}", cast_to=object, options={"timeout": 10})
        except openai.NotFoundError:
            pass  # ended already (or collected): nothing to do
        except openai.OpenAIError as e:
            raise self._error(e, 10) from e

    def start_program(self, program_id: str) -> None:
        self._program_call("PUT", program_id)

    def end_program(self, program_id: str) -> None:
        """Tell the server, in the background: a run's end (a callback, possibly on an
        event loop) must not wait for an HTTP round trip."""
        _ENDER.submit(self._ended_quietly, program_id)

    def _ended_quietly(self, program_id: str) -> None:
        try:
            self._program_call("DELETE", program_id)
        except Exception:  # noqa: BLE001 - an unreachable server ends it by its idle timeout
            pass

    def _error(self, e: Exception, timeout: float | None) -> Exception:
        """The chat model's error for an HTTP failure (``openai_http.classify``)."""
        kind = openai_http.classify(e)
        if kind is Failure.TIMEOUT:
            return CallTimeoutError(f"No answer from {self.base_url} within {timeout} s")
        if kind is Failure.UNREACHABLE:
            return EngineUnavailableError(f"Cannot reach the engine at {self.base_url}: {e}")
        if kind is Failure.REQUEST:
            message = openai_http.message_of(e)
            if openai_http.status_of(e) == 404:
                return UnknownModelError(f"The engine at {self.base_url}: {message}")
            return InvalidCallError(f"The engine refused the call: {message}")
        return EngineFailedError(f"The engine at {self.base_url} failed the call: {e}")


class _ResultBuilder:
    """Chat-completion chunks into StreamChunks; the final one carries a ``CallResult``
    built from the text, finish reason, usage, the server's record of the call (its
    statistics and policy) and the latency measured here."""

    def __init__(self, request: CallRequest) -> None:
        self.request = request
        self.submitted = time.monotonic()
        self.first_token: float | None = None
        self.text: list[str] = []
        self.finish: str | None = None
        self.usage: Any = None
        self.stats: dict[str, Any] | None = None  # the server's CallStats, on the usage chunk
        self.policy = ""  # the policy the server ran (its ``X-Autellix-Policy`` header)
        self.call_id = ""
        self.tool_calls: dict[int, dict[str, str]] = {}  # by index: id, name, arguments

    def feed(self, chunk: Any) -> list[StreamChunk]:
        self.call_id = chunk.id or self.call_id
        self.usage = chunk.usage or self.usage
        extra = chunk.model_extra or {}
        params = extra.get("kv_transfer_params") or {}
        self.stats = params.get(STATS_KEY, self.stats) if isinstance(params, dict) else self.stats
        out = []
        for choice in chunk.choices:
            self.finish = choice.finish_reason or self.finish
            for delta in choice.delta.tool_calls or ():
                self._add_tool_call(delta)
            if choice.delta.content:
                if self.first_token is None:
                    self.first_token = time.monotonic()
                self.text.append(choice.delta.content)
                out.append(StreamChunk(choice.delta.content, ()))
        return out

    def read_headers(self, headers: Any) -> None:
        """The policy the server ran, from its ``X-Autellix-Policy`` response header
        (the response bodies are exactly vLLM's)."""
        self.policy = headers.get(POLICY_HEADER) or self.policy

    def _add_tool_call(self, delta: Any) -> None:
        """A streamed tool-call piece (OpenAI's deltas: id and name once, the
        arguments' JSON text in pieces)."""
        call = self.tool_calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
        call["id"] = delta.id or call["id"]
        if delta.function is not None:
            call["name"] += delta.function.name or ""
            call["arguments"] += delta.function.arguments or ""

    def final(self) -> StreamChunk:
        from autellix_engine.core.stats import CallStats
        from autellix_engine.frontend.results import CallResult, ToolCall, Usage

        prompt, completion, cached = openai_http.usage_counts(self.usage)
        usage = Usage(prompt, completion, cached)
        ttft = None if self.first_token is None else self.first_token - self.submitted
        result = CallResult(
            "".join(self.text), (), self.finish or "stop", None, usage,
            CallStats.from_dict(self.stats) if self.stats else CallStats(),
            time.monotonic() - self.submitted, ttft,
            self.request.program_id or "", self.request.thread, self.call_id,
            policy=self.policy,
            tool_calls=tuple(ToolCall(c["id"] or f"call_{i}", c["name"], c["arguments"])
                             for i, c in sorted(self.tool_calls.items())),
        )
        return StreamChunk("", (), self.finish or "stop", result)
