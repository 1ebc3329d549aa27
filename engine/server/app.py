"""The Starlette app: OpenAI-compatible endpoints plus a program API.

Endpoints: ``POST /v1/chat/completions``, ``POST /v1/completions`` (streaming with SSE
and not; ``stream_options.include_usage``; ``response_format``), ``GET /v1/models``,
``PUT|DELETE|GET /v1/programs/{id}``, ``GET /health`` (as in ``vllm serve``: 200 while
some replica can run calls), ``GET /health/ready`` (readiness: that, and not shutting
down), ``GET /health/live`` (liveness: 503 means restart this process), ``GET /metrics``,
``GET /openapi.json``.

Program and thread ids come from the ``X-Autellix-Program-Id`` / ``X-Autellix-Thread-Id``
headers or the ``program_id`` / ``thread_id`` body fields, else from the session
identities that vLLM and gateways use (body ``session_id``, ``X-Session-ID``, llm-d's
``x-gateway-inference-fairness-id``): see ``protocol.program_identity``. A call's
``priority`` (body, or vLLM's ``X-Vllm-Priority`` header) is a strict outer key over
the policy's queues. The W3C ``traceparent`` header is passed on with the call. With
API keys configured, program ids are scoped per key. A client that disconnects has its
engine request aborted.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from autellix_engine.core.errors import (
    EngineNotRunningError,
    InvalidRequestError,
    ProgramEndedError,
    ReplicaError,
    UnknownProgramError,
)
from autellix_engine.frontend.engine import AutellixEngine
from autellix_engine.server import body as body_checks
from autellix_engine.server import metrics, openapi, protocol
from autellix_engine.server.protocol import RequestError
from autellix_engine.server.settings import ServerSettings
from autellix_engine.server.spans import CallSpan

logger = logging.getLogger(__name__)

#: Errors that mean the service cannot run the call now (HTTP 503), not the call's fault.
UNAVAILABLE = (EngineNotRunningError, ReplicaError)
PROGRAM_HEADER = "x-autellix-program-id"
THREAD_HEADER = "x-autellix-thread-id"


def build_app(engine: AutellixEngine, settings: ServerSettings | None = None) -> Starlette:
    """The server for a started ``AutellixEngine`` (one replica or many)."""
    settings = settings or ServerSettings()
    server = _Server(engine, settings)
    routes = [
        Route("/health", server.health),
        Route("/health/ready", server.ready),
        Route("/health/live", server.live),
        Route("/metrics", server.metrics),
        Route("/v1/models", server.models),
        Route("/v1/chat/completions", server.chat, methods=["POST"]),
        Route("/v1/completions", server.completions, methods=["POST"]),
        Route("/v1/programs/{program_id}", server.program, methods=["GET", "PUT", "DELETE"]),
        Route("/openapi.json", server.openapi),
    ]
    app = Starlette(routes=routes, exception_handlers={RequestError: _request_error,
                                                       Exception: _internal_error})
    app.state.server = server
    return app


async def _request_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestError)
    return JSONResponse(exc.body(), status_code=exc.status)


async def _internal_error(request: Request, exc: Exception) -> Response:
    """A bug, not the client's fault: logged with an id; the client gets the id only."""
    error_id = uuid.uuid4().hex[:16]
    logger.error("Internal error %s on %s %s", error_id, request.method, request.url.path,
                 exc_info=exc)
    body = RequestError(f"Internal server error (id {error_id})", status=500).body()
    return JSONResponse(body, status_code=500)


async def _close_all(starts: list[tuple[Any, AsyncIterator]], own_program: str | None,
                     engine: AutellixEngine) -> None:
    """Close the choices' streams (aborting unfinished calls) and end the request's own
    program."""
    for _, stream in starts:
        await stream.aclose()
    if own_program is not None and engine.is_program_running(own_program):
        engine.end_program(own_program)


class _TokenBucket:
    """At most ``rate`` events per second, in bursts of up to ``rate``."""

    def __init__(self, rate: float) -> None:
        self.rate, self.tokens, self.last = rate, rate, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class _Server:
    def __init__(self, engine: AutellixEngine, settings: ServerSettings) -> None:
        self.engine, self.settings = engine, settings
        self.policy = engine.config.policy
        self.series = metrics.ServerMetrics(engine)
        self._started = int(time.time())
        self._openapi: dict | None = None
        self._program_buckets: dict[str, _TokenBucket] = {}
        self.draining = False  # shutting down: new calls get 503, readiness fails

    # -- helpers --------------------------------------------------------------------------
    def _decode(self, token_id: int) -> str:
        """A token's text (OpenAI's logprobs name tokens by text)."""
        return self.engine.tokenizer.decode([token_id])

    def _scope(self, request: Request) -> str:
        """A short id of the caller's key ("anon" without keys); raises 401."""
        if not self.settings.api_keys:
            return "anon"
        auth = request.headers.get("authorization", "")
        key = auth[7:] if auth.lower().startswith("bearer ") else ""
        # Constant time: the comparison must not tell how much of a key was right.
        if not any(hmac.compare_digest(key.encode(), k.encode()) for k in self.settings.api_keys):
            raise RequestError("Invalid or missing API key", status=401, code="invalid_api_key")
        return hashlib.sha256(key.encode()).hexdigest()[:12]

    def _internal_id(self, scope: str, program_id: str) -> str:
        return f"{scope}/{program_id}"

    async def _json(self, request: Request) -> Any:
        # JSON only: a browser page on another origin can POST text/plain to a local
        # server without a CORS preflight; application/json needs one.
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            raise RequestError("Content-Type must be application/json", status=415)
        length = request.headers.get("content-length", "0")
        if not length.isdigit() or int(length) > self.settings.max_body_bytes:
            raise RequestError(f"The request body may be at most "
                               f"{self.settings.max_body_bytes} bytes", status=413)
        body = b""
        async for part in request.stream():
            body += part
            if len(body) > self.settings.max_body_bytes:
                raise RequestError(f"The request body may be at most "
                                   f"{self.settings.max_body_bytes} bytes", status=413)
        return body_checks.load_json(body)

    # -- endpoints ------------------------------------------------------------------------
    async def health(self, request: Request) -> Response:
        """200 while some replica passed its last probe (``vllm serve``'s meaning)."""
        if not self.engine.is_running:
            return JSONResponse({"status": "down"}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def ready(self, request: Request) -> Response:
        """Readiness: can take traffic now (a replica is up, not shutting down)."""
        if self.draining:
            return JSONResponse({"status": "shutting down"}, status_code=503)
        return await self.health(request)

    async def live(self, request: Request) -> Response:
        """Liveness: 503 when the process should be restarted (no replica could run
        calls for ``EngineConfig.dead_after_s``, or the health monitor stopped)."""
        if not self.engine.is_alive:
            return JSONResponse({"status": "dead"}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def models(self, request: Request) -> Response:
        self._scope(request)
        name = self.engine.model_name
        return JSONResponse({"object": "list", "data": [
            {"id": name, "object": "model", "created": self._started, "owned_by": "autellix",
             "max_model_len": self.engine.max_model_len}]})

    async def openapi(self, request: Request) -> Response:
        if self._openapi is None:
            self._openapi = openapi.document(self.engine.model_name)
        return JSONResponse(self._openapi)

    async def metrics(self, request: Request) -> Response:
        if self.settings.metrics_auth:
            self._scope(request)
        return Response(self.series.page(), media_type=metrics.CONTENT_TYPE)

    async def program(self, request: Request) -> Response:
        scope = self._scope(request)
        external = body_checks.check_id(request.path_params["program_id"], "program_id")
        pid = self._internal_id(scope, external)
        if request.method == "PUT":
            if not self.engine.is_program_running(pid):
                self._admit_program(scope)
            self.engine.ensure_program(pid)
        elif request.method == "DELETE":
            try:
                snap = self.engine.end_program(pid)
            except UnknownProgramError:
                raise RequestError(f"No program {external!r}", status=404) from None
            self.series.program_latency.observe(max(0.0, time.time() - snap.created))
            return JSONResponse(_snapshot(snap, external))
        snap = self.engine.program_stats(pid) if self.engine.is_program_running(pid) else None
        if snap is None:
            raise RequestError(f"No program {external!r}", status=404)
        return JSONResponse(_snapshot(snap, external))

    async def chat(self, request: Request) -> Response:
        return await self._complete(request, chat=True)

    async def completions(self, request: Request) -> Response:
        return await self._complete(request, chat=False)

    async def _complete(self, request: Request, *, chat: bool) -> Response:
        self.series.requests.inc()
        scope = self._scope(request)
        if self.draining:
            raise RequestError("The server is shutting down", status=503)
        parsed = protocol.parse_request(
            await self._json(request), chat=chat, model=self.engine.model_name,
            max_tokens_limit=self.settings.max_tokens_limit)
        external = protocol.program_identity(request.headers, PROGRAM_HEADER, parsed)
        priority = protocol.call_priority(request.headers, parsed)
        pid = self._internal_id(scope, external) if external else None
        header_thread = request.headers.get(THREAD_HEADER)
        thread = body_checks.check_id(header_thread, THREAD_HEADER) if header_thread else (
            parsed.thread)
        if pid is not None and not self.engine.is_program_running(pid):
            self._admit_program(scope)
        rid, model = protocol.new_id(chat), self.engine.model_name
        span = CallSpan(request.headers, request.url.path, chat=chat, model=model,
                        policy=self.policy, response_id=rid,
                        program_id=external, params=parsed.params)
        if parsed.n > 1:
            return await self._complete_many(request, parsed, pid, thread, priority, span,
                                              chat=chat, rid=rid, external=external)
        try:
            first, stream = await self._start(parsed, pid, thread, span.trace_context, priority,
                                              call_id=rid)
        except BaseException as e:
            span.finish(error=e)
            raise
        if parsed.stream:
            sse = self._sse_tools if parsed.tool_mode and chat else self._sse
            events = sse(first, stream, chat=chat, model=model, rid=rid,
                         include_usage=parsed.include_usage, span=span)
            return StreamingResponse(events, media_type="text/event-stream")
        try:
            result = await self._collect(request, first, stream)
        except UNAVAILABLE as e:  # a replica failed the call after it started
            self.series.errors.inc()
            span.finish(error=e, status=503)
            raise RequestError(str(e), status=503) from None
        span.finish(result, status=None if result else 499)
        if result is None:
            return Response(status_code=499)
        self.series.call_latency.observe(result.latency_s)
        body = protocol.completion_body(result, chat=chat, model=model, rid=rid,
                                        policy=self.policy,
                                        tool_mode=parsed.tool_mode, decode=self._decode)
        body["program_id"] = external
        return JSONResponse(body)

    async def _complete_many(self, request: Request, parsed: protocol.ParsedRequest,
                             pid: str | None, thread: str, priority: int, span: CallSpan, *,
                             chat: bool, rid: str, external: str | None) -> Response:
        """``n`` choices: ``n`` calls in parallel, threads ``<thread>/<i>`` of one program
        (the request's own, ended with it, when it names none)."""
        own = pid is None
        pid = pid or f"n/{rid}"
        starts: list[tuple[Any, AsyncIterator]] = []
        try:
            for i in range(parsed.n):  # the first start validates; none runs before it
                starts.append(await self._start(parsed, pid, f"{thread}/{i}",
                                                span.trace_context, priority, f"{rid}/{i}"))
        except BaseException as e:
            await _close_all(starts, pid if own else None, self.engine)
            span.finish(error=e)
            raise
        model = self.engine.model_name
        if parsed.stream:
            events = self._sse_many(starts, chat=chat, model=model, rid=rid,
                                    include_usage=parsed.include_usage, span=span,
                                    own_program=pid if own else None)
            return StreamingResponse(events, media_type="text/event-stream")
        try:
            results = await asyncio.gather(*(self._collect(request, first, stream)
                                             for first, stream in starts))
        except UNAVAILABLE as e:
            self.series.errors.inc()
            span.finish(error=e, status=503)
            raise RequestError(str(e), status=503) from None
        finally:
            await _close_all(starts, pid if own else None, self.engine)
        if any(r is None for r in results):
            return Response(status_code=499)
        span.finish(results[0])
        for result in results:
            self.series.call_latency.observe(result.latency_s)
        body = protocol.completion_body(list(results), chat=chat, model=model, rid=rid,
                                        policy=self.policy,
                                        tool_mode=parsed.tool_mode, decode=self._decode)
        body["program_id"] = external
        return JSONResponse(body)

    async def _sse_many(self, starts: list[tuple[Any, AsyncIterator]], *, chat: bool,
                        model: str, rid: str, include_usage: bool, span: CallSpan,
                        own_program: str | None) -> AsyncIterator[str]:
        """The choices' chunks as they come, each with its ``index``."""
        inbox: asyncio.Queue = asyncio.Queue()

        async def pump(index: int, chunk: Any, stream: AsyncIterator) -> None:
            try:
                while True:
                    await inbox.put((index, chunk))
                    if chunk.result is not None:
                        return
                    chunk = await anext(stream)
            except Exception as e:  # noqa: BLE001 - reported as an error event
                await inbox.put((index, e))

        tasks = [asyncio.create_task(pump(i, first, stream))
                 for i, (first, stream) in enumerate(starts)]
        results: dict[int, Any] = {}
        offsets = [0] * len(starts)
        try:
            while len(results) < len(starts):
                index, item = await inbox.get()
                if isinstance(item, Exception):
                    self.series.errors.inc()
                    span.finish(error=item)
                    status = 503 if isinstance(item, UNAVAILABLE) else 500
                    yield f"data: {json.dumps(RequestError(str(item), status=status).body())}\n\n"
                    break
                logprobs = protocol.logprobs_body(item.logprobs, chat=chat, decode=self._decode,
                                                  offset=offsets[index])
                offsets[index] += len(item.text)
                body = protocol.chunk_body(item.text, item.finish_reason, chat=chat,
                                           model=model, rid=rid, index=index,
                                           logprobs=logprobs)
                yield f"data: {json.dumps(body)}\n\n"
                if item.result is not None:
                    results[index] = item.result
                    self.series.call_latency.observe(item.result.latency_s)
            else:
                ordered = [results[i] for i in range(len(starts))]
                span.finish(ordered[0])
                if include_usage:
                    tail = protocol.usage_chunk(ordered[0], chat=chat, model=model, rid=rid,
                                                policy=self.policy,
                                                more=tuple(ordered[1:]))
                    yield f"data: {json.dumps(tail)}\n\n"
            yield "data: [DONE]\n\n"
        finally:
            for task in tasks:
                task.cancel()
            await _close_all(starts, own_program, self.engine)
            span.finish()

    async def _start(self, parsed: protocol.ParsedRequest, pid: str | None, thread: str,
                     trace: dict[str, str], priority: int,
                     call_id: str) -> tuple[Any, AsyncIterator]:
        """Start the call: its first chunk (validation errors surface here, before any
        state changed or byte was sent) and the rest of its stream."""
        for restarted in (False, True):
            stream = self.engine.stream(parsed.prompt, program_id=pid, thread=thread,
                                        trace_context=trace, priority=priority,
                                        call_id=call_id, **parsed.params)
            try:
                return await anext(stream), stream
            except ProgramEndedError as e:
                if restarted or pid is None:
                    self.series.errors.inc()
                    raise RequestError(str(e)) from None
                self.engine.ensure_program(pid)  # a valid call on an ended id: start afresh
            except InvalidRequestError as e:
                self.series.errors.inc()
                raise RequestError(str(e)) from None
            except UNAVAILABLE as e:
                self.series.errors.inc()
                raise RequestError(str(e), status=503) from None
        raise AssertionError("unreachable")

    def _admit_program(self, scope: str) -> None:
        """A new program of this key: within its live-program cap and creation rate."""
        limit = self.settings.max_programs_per_key
        prefix = f"{scope}/"
        if sum(p.program_id.startswith(prefix) for p in self.engine.programs()) >= limit:
            raise RequestError(f"This key has {limit} live programs, the most allowed; end "
                               "some (DELETE /v1/programs/{id})", status=429,
                               code="too_many_programs")
        bucket = self._program_buckets.setdefault(scope, _TokenBucket(
            self.settings.program_rate_per_s))
        if not bucket.take():
            raise RequestError("Programs are being created too fast for this key "
                               f"(at most {self.settings.program_rate_per_s}/s)", status=429,
                               code="rate_limited")

    async def _collect(self, request: Request, first, stream: AsyncIterator):
        """Drain a call; abort it if the client goes away meanwhile."""
        async def drain():
            result = first.result
            async for chunk in stream:
                result = chunk.result or result
            return result

        task = asyncio.ensure_future(drain())
        while not task.done():
            done, _ = await asyncio.wait({task}, timeout=0.5)
            if not done and await request.is_disconnected():
                task.cancel()
                self.series.aborted.inc()
                await stream.aclose()
                return None
        return task.result()

    async def _sse(self, first, stream: AsyncIterator, *, chat: bool, model: str, rid: str,
                   include_usage: bool, span: CallSpan) -> AsyncIterator[str]:
        try:
            chunk, is_first, offset = first, True, 0
            while True:
                logprobs = protocol.logprobs_body(chunk.logprobs, chat=chat,
                                                  decode=self._decode, offset=offset)
                offset += len(chunk.text)
                body = protocol.chunk_body(chunk.text, chunk.finish_reason, chat=chat,
                                           model=model, rid=rid, first=is_first,
                                           logprobs=logprobs)
                yield f"data: {json.dumps(body)}\n\n"
                if chunk.result is not None:
                    self.series.call_latency.observe(chunk.result.latency_s)
                    span.finish(chunk.result)
                    if include_usage:
                        tail = protocol.usage_chunk(chunk.result, chat=chat, model=model, rid=rid,
                                                policy=self.policy)
                        yield f"data: {json.dumps(tail)}\n\n"
                    break
                try:
                    chunk, is_first = await anext(stream), False
                except UNAVAILABLE as e:
                    # Headers are sent: the failure goes as an error event, as vLLM does.
                    self.series.errors.inc()
                    span.finish(error=e, status=503)
                    error = RequestError(str(e), status=503).body()
                    yield f"data: {json.dumps(error)}\n\n"
                    break
            yield "data: [DONE]\n\n"
        finally:
            await stream.aclose()  # a disconnected client lands here: the call is aborted
            span.finish()


    async def _sse_tools(self, first, stream: AsyncIterator, *, chat: bool, model: str,
                         rid: str, include_usage: bool, span: CallSpan) -> AsyncIterator[str]:
        """Tool mode: the envelope is parsed whole, so the message comes as one delta."""
        try:
            result = first.result
            async for chunk in stream:
                result = chunk.result or result
        finally:
            await stream.aclose()
            span.finish(result)
        self.series.call_latency.observe(result.latency_s)
        message, finish = protocol.tool_message(result.text)
        body = protocol.chunk_body("", None, chat=True, model=model, rid=rid, first=True)
        body["choices"][0]["delta"] = {k: v for k, v in message.items() if v is not None}
        if "tool_calls" in message:
            for i, call in enumerate(body["choices"][0]["delta"]["tool_calls"]):
                call["index"] = i
        yield f"data: {json.dumps(body)}\n\n"
        tail = protocol.chunk_body("", finish or result.finish_reason, chat=True, model=model,
                                   rid=rid)
        yield f"data: {json.dumps(tail)}\n\n"
        if include_usage:
            usage = protocol.usage_chunk(result, chat=True, model=model, rid=rid,
                                         policy=self.policy)
            yield f"data: {json.dumps(usage)}\n\n"
        yield "data: [DONE]\n\n"


def _snapshot(snap: Any, external: str) -> dict[str, Any]:
    t = snap.tally
    return {"program_id": external, "service": snap.service, "num_calls": t.calls,
            "active_threads": list(snap.active_threads),
            "tokens_generated": t.completion_tokens, "queue_wait_s": t.queue_wait_s,
            "preemptions": t.preemptions}
