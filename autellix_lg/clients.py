"""How ``AutellixChatModel`` reaches an engine: embedded (in this process) or remote.

Both implement :class:`EngineClient`: stream one call, start and end programs. The
embedded client bridges any caller (sync code, or async code on another event loop)
to the engine's own loop; vLLM's ``AsyncLLM`` is bound to the loop that started it.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from autellix_engine.api import AutellixEngine
from autellix_engine.config import EngineConfig
from autellix_engine.errors import AutellixError
from autellix_engine.results import StreamChunk


class EngineUnavailableError(AutellixError, ConnectionError):
    """The engine (embedded or remote) cannot be reached or is down."""


class CallTimeoutError(AutellixError, TimeoutError):
    """A call did not finish within the model's ``timeout``; it was aborted."""


@dataclass(frozen=True, slots=True)
class CallRequest:
    """One chat call, engine-agnostic."""

    messages: list[dict[str, str]]
    program_id: str | None
    thread: str
    params: dict[str, Any]  # sampling params incl. max_tokens, json_schema
    trace_context: dict[str, str] = field(default_factory=dict)


class EngineClient(Protocol):
    """What the chat model needs from an engine."""

    model_name: str
    policy: str

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
            threading.Thread(target=loop.run_forever, name="autellix-engine", daemon=True).start()
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


class EmbeddedClient:
    """Calls an in-process ``AutellixEngine`` from any thread or event loop."""

    def __init__(self, engine: AutellixEngine) -> None:
        self.engine = engine
        self.model_name = engine.config.model
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
                trace_context=request.trace_context, **request.params,
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
        if program_id in self.engine.table:
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
class RemoteClient:
    """An Autellix server over HTTP (OpenAI-compatible ``/v1/chat/completions``).

    Program and thread ids travel in ``X-Autellix-Program-Id`` / ``X-Autellix-Thread-Id``
    headers and W3C trace context in ``traceparent``; guided output as OpenAI's
    ``response_format`` (json_schema). The server itself comes with issue #5.
    """

    def __init__(self, base_url: str, api_key: str | None, model_name: str, policy: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.model_name = model_name
        self.policy = policy

    def _headers(self, request: CallRequest | None = None) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        if request is not None:
            headers.update(request.trace_context)
            if request.program_id:
                headers["X-Autellix-Program-Id"] = request.program_id
            headers["X-Autellix-Thread-Id"] = request.thread
        return headers

    def _body(self, request: CallRequest) -> dict[str, Any]:
        params = dict(request.params)
        body: dict[str, Any] = {"model": self.model_name, "messages": request.messages,
                                "stream": True, "stream_options": {"include_usage": True}}
        schema = params.pop("json_schema", None)
        if schema is not None:
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "output", "schema": schema}}
        body.update({k: v for k, v in params.items() if v is not None})
        return body

    def stream(self, request: CallRequest, timeout: float | None = None) -> Iterator[StreamChunk]:
        import httpx

        try:
            with httpx.Client(timeout=timeout) as http, http.stream(
                "POST", f"{self.base_url}/v1/chat/completions",
                headers=self._headers(request), json=self._body(request),
            ) as resp:
                _raise_for_status(resp)
                parser = _SSEParser(request)
                for line in resp.iter_lines():
                    yield from parser.feed(line)
                yield parser.final()
        except httpx.TimeoutException as e:
            raise CallTimeoutError(f"No answer from {self.base_url} within {timeout} s") from e
        except httpx.TransportError as e:
            raise EngineUnavailableError(f"Cannot reach the engine at {self.base_url}: {e}") from e

    async def astream(
        self, request: CallRequest, timeout: float | None = None
    ) -> AsyncIterator[StreamChunk]:
        import httpx

        try:
            async with httpx.AsyncClient(timeout=timeout) as http, http.stream(
                "POST", f"{self.base_url}/v1/chat/completions",
                headers=self._headers(request), json=self._body(request),
            ) as resp:
                _raise_for_status(resp)
                parser = _SSEParser(request)
                async for line in resp.aiter_lines():
                    for chunk in parser.feed(line):
                        yield chunk
                yield parser.final()
        except httpx.TimeoutException as e:
            raise CallTimeoutError(f"No answer from {self.base_url} within {timeout} s") from e
        except httpx.TransportError as e:
            raise EngineUnavailableError(f"Cannot reach the engine at {self.base_url}: {e}") from e

    def _program_call(self, method: str, program_id: str) -> None:
        import httpx

        try:
            httpx.request(method, f"{self.base_url}/v1/programs/{program_id}",
                          headers=self._headers(), timeout=10)
        except httpx.TransportError as e:
            raise EngineUnavailableError(f"Cannot reach the engine at {self.base_url}: {e}") from e

    def start_program(self, program_id: str) -> None:
        self._program_call("PUT", program_id)

    def end_program(self, program_id: str) -> None:
        self._program_call("DELETE", program_id)


def _raise_for_status(resp: Any) -> None:
    if resp.status_code >= 400:
        raise EngineUnavailableError(f"The engine answered HTTP {resp.status_code}")


class _SSEParser:
    """Incremental parser of OpenAI chat-completion SSE lines into StreamChunks; the
    final chunk carries a ``CallResult`` built from the text, finish reason and usage."""

    def __init__(self, request: CallRequest) -> None:
        self.request = request
        self.text: list[str] = []
        self.finish: str | None = None
        self.usage: dict[str, Any] = {}
        self.call_id = ""
        self.done = False

    def feed(self, line: str) -> list[StreamChunk]:
        if self.done or not line.startswith("data:"):
            return []
        data = line[5:].strip()
        if data == "[DONE]":
            self.done = True
            return []
        event = json.loads(data)
        self.call_id = event.get("id", self.call_id)
        self.usage = event.get("usage") or self.usage
        out = []
        for choice in event.get("choices") or []:
            delta = (choice.get("delta") or {}).get("content") or ""
            self.finish = choice.get("finish_reason") or self.finish
            if delta:
                self.text.append(delta)
                out.append(StreamChunk(delta, ()))
        return out

    def final(self) -> StreamChunk:
        from autellix_engine.policy.calls import CallStats
        from autellix_engine.results import CallResult, Usage

        u = self.usage
        result = CallResult(
            "".join(self.text), (), self.finish or "stop", None,
            Usage(u.get("prompt_tokens", 0), u.get("completion_tokens", 0),
                  (u.get("prompt_tokens_details") or {}).get("cached_tokens", 0)),
            CallStats(), 0.0, None,
            self.request.program_id or "", self.request.thread, self.call_id,
        )
        return StreamChunk("", (), self.finish or "stop", result)
