"""The Starlette app: OpenAI-compatible endpoints plus a program API.

Endpoints: ``POST /v1/chat/completions``, ``POST /v1/completions`` (streaming with SSE
and not; ``stream_options.include_usage``; ``response_format``), ``GET /v1/models``,
``PUT|DELETE|GET /v1/programs/{id}``, ``GET /health``, ``GET /metrics``.

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
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from autellix_engine.api import AutellixEngine
from autellix_engine.errors import (
    EngineNotRunningError,
    InvalidRequestError,
    ProgramEndedError,
    UnknownProgramError,
)
from autellix_engine.server import metrics, protocol
from autellix_engine.server.protocol import RequestError
from autellix_engine.server.settings import ServerSettings

PROGRAM_HEADER = "x-autellix-program-id"
THREAD_HEADER = "x-autellix-thread-id"
TRACE_HEADERS = ("traceparent", "tracestate")


def build_app(engine: AutellixEngine, settings: ServerSettings | None = None) -> Starlette:
    """The server for a started ``AutellixEngine`` (one replica or many)."""
    settings = settings or ServerSettings()
    server = _Server(engine, settings)
    routes = [
        Route("/health", server.health),
        Route("/metrics", server.metrics),
        Route("/v1/models", server.models),
        Route("/v1/chat/completions", server.chat, methods=["POST"]),
        Route("/v1/completions", server.completions, methods=["POST"]),
        Route("/v1/programs/{program_id}", server.program, methods=["GET", "PUT", "DELETE"]),
    ]
    app = Starlette(routes=routes, exception_handlers={RequestError: _request_error})
    app.state.server = server
    return app


async def _request_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestError)
    return JSONResponse(exc.body(), status_code=exc.status)


class _Server:
    def __init__(self, engine: AutellixEngine, settings: ServerSettings) -> None:
        self.engine, self.settings = engine, settings
        self.counters = {"requests": 0, "errors": 0, "aborted": 0}
        self.call_latency = metrics.Histogram(
            "autellix_call_latency_seconds", "Latency of completed calls (submission to end).")
        self.program_latency = metrics.Histogram(
            "autellix_program_latency_seconds",
            "Latency of programs ended through the program API (start to end).")

    # -- helpers --------------------------------------------------------------------------
    def _scope(self, request: Request) -> str:
        """A short id of the caller's key ("anon" without keys); raises 401."""
        if not self.settings.api_keys:
            return "anon"
        auth = request.headers.get("authorization", "")
        key = auth[7:] if auth.lower().startswith("bearer ") else ""
        if key not in self.settings.api_keys:
            raise RequestError("Invalid or missing API key", status=401, code="invalid_api_key")
        return hashlib.sha256(key.encode()).hexdigest()[:12]

    def _internal_id(self, scope: str, program_id: str) -> str:
        return f"{scope}/{program_id}"

    async def _json(self, request: Request) -> Any:
        length = request.headers.get("content-length")
        if length is not None and int(length) > self.settings.max_body_bytes:
            raise RequestError("Request body too large", status=413)
        body = b""
        async for part in request.stream():
            body += part
            if len(body) > self.settings.max_body_bytes:
                raise RequestError("Request body too large", status=413)
        try:
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RequestError(f"Malformed JSON: {e}") from None

    # -- endpoints ------------------------------------------------------------------------
    async def health(self, request: Request) -> Response:
        if not self.engine.is_running:
            return JSONResponse({"status": "down"}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def models(self, request: Request) -> Response:
        self._scope(request)
        name = self.engine.model_name
        return JSONResponse({"object": "list", "data": [
            {"id": name, "object": "model", "owned_by": "autellix"}]})

    async def metrics(self, request: Request) -> Response:
        page = metrics.render(self.engine, self.counters,
                              [self.call_latency, self.program_latency])
        return PlainTextResponse(page, media_type="text/plain; version=0.0.4")

    async def program(self, request: Request) -> Response:
        scope = self._scope(request)
        external = request.path_params["program_id"]
        pid = self._internal_id(scope, external)
        if request.method == "PUT":
            self.engine.ensure_program(pid)
        elif request.method == "DELETE":
            try:
                snap = self.engine.end_program(pid)
            except UnknownProgramError:
                raise RequestError(f"No program {external!r}", status=404) from None
            self.program_latency.observe(max(0.0, time.time() - snap.created))
            return JSONResponse(_snapshot(snap, external))
        snap = self.engine.table.get(pid)
        if snap is None:
            raise RequestError(f"No program {external!r}", status=404)
        return JSONResponse(_snapshot(snap, external))

    async def chat(self, request: Request) -> Response:
        return await self._complete(request, chat=True)

    async def completions(self, request: Request) -> Response:
        return await self._complete(request, chat=False)

    async def _complete(self, request: Request, *, chat: bool) -> Response:
        self.counters["requests"] += 1
        scope = self._scope(request)
        parsed = protocol.parse_request(
            await self._json(request), chat=chat, model=self.engine.model_name,
            max_tokens_limit=self.settings.max_tokens_limit)
        external = protocol.program_identity(request.headers, PROGRAM_HEADER, parsed)
        priority = protocol.call_priority(request.headers, parsed)
        pid = self._internal_id(scope, external) if external else None
        if pid is not None:
            self.engine.ensure_program(pid)
        thread = request.headers.get(THREAD_HEADER) or parsed.thread
        trace = {h: request.headers[h] for h in TRACE_HEADERS if h in request.headers}
        stream = self.engine.stream(parsed.prompt, program_id=pid, thread=thread,
                                    trace_context=trace, priority=priority, **parsed.params)
        rid, model = protocol.new_id(chat), self.engine.model_name
        try:
            first = await anext(stream)  # validation errors surface here, before any byte
        except (InvalidRequestError, ProgramEndedError) as e:
            self.counters["errors"] += 1
            raise RequestError(str(e)) from None
        except EngineNotRunningError as e:
            self.counters["errors"] += 1
            raise RequestError(str(e), status=503) from None
        if parsed.stream:
            sse = self._sse_tools if parsed.tool_mode and chat else self._sse
            events = sse(first, stream, chat=chat, model=model, rid=rid,
                         include_usage=parsed.include_usage)
            return StreamingResponse(events, media_type="text/event-stream")
        result = await self._collect(request, first, stream)
        if result is None:
            return Response(status_code=499)
        self.call_latency.observe(result.latency_s)
        body = protocol.completion_body(result, chat=chat, model=model, rid=rid,
                                        tool_mode=parsed.tool_mode)
        body["program_id"] = external
        return JSONResponse(body)

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
                self.counters["aborted"] += 1
                await stream.aclose()
                return None
        return task.result()

    async def _sse(self, first, stream: AsyncIterator, *, chat: bool, model: str, rid: str,
                   include_usage: bool) -> AsyncIterator[str]:
        try:
            chunk, is_first = first, True
            while True:
                body = protocol.chunk_body(chunk.text, chunk.finish_reason, chat=chat,
                                           model=model, rid=rid, first=is_first)
                yield f"data: {json.dumps(body)}\n\n"
                if chunk.result is not None:
                    self.call_latency.observe(chunk.result.latency_s)
                    if include_usage:
                        tail = protocol.usage_chunk(chunk.result, chat=chat, model=model, rid=rid)
                        yield f"data: {json.dumps(tail)}\n\n"
                    break
                chunk, is_first = await anext(stream), False
            yield "data: [DONE]\n\n"
        finally:
            await stream.aclose()  # a disconnected client lands here: the call is aborted


    async def _sse_tools(self, first, stream: AsyncIterator, *, chat: bool, model: str,
                         rid: str, include_usage: bool) -> AsyncIterator[str]:
        """Tool mode: the envelope is parsed whole, so the message comes as one delta."""
        try:
            result = first.result
            async for chunk in stream:
                result = chunk.result or result
        finally:
            await stream.aclose()
        self.call_latency.observe(result.latency_s)
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
            usage = protocol.usage_chunk(result, chat=True, model=model, rid=rid)
            yield f"data: {json.dumps(usage)}\n\n"
        yield "data: [DONE]\n\n"


def _snapshot(snap: Any, external: str) -> dict[str, Any]:
    return {"program_id": external, "service": snap.service, "num_calls": snap.num_calls,
            "active_threads": list(snap.active_threads), "tokens_generated":
            snap.tokens_generated, "queue_wait_s": snap.queue_wait_s,
            "preemptions": snap.preemptions}
