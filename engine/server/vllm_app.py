"""The server on vLLM's own OpenAI layer: ``vllm serve``'s application over our front end.

vLLM's FastAPI application (chat, completions, responses, tokenize, detokenize,
version, docs, its tool and reasoning parsers, its ``/metrics``), built by vLLM's
``build_app`` and ``init_app_state``, drives
:class:`~autellix_engine.frontend.engine_client.ProgramEngineClient`, so every call runs
as part of its program on the replicas. Added to it:

- the program API, ``PUT|DELETE|GET /v1/programs/{id}``, and ``/health/ready``,
  ``/health/live``, ``/autellix/metrics`` (program series), from the same handlers as
  the Autellix server (``autellix_engine.server.app``);
- a middleware that gives each request its program scope (per API key), our program
  and thread headers, 413 for bodies over ``max_body_bytes``, 503 while draining;
- a new program per key within ``max_programs_per_key`` and ``program_rate_per_s``
  (429 beyond).

Program identity is vLLM's ``session_id`` (body, ``X-Session-ID``, ``vllm_xargs``),
or our ``X-Autellix-Program-Id`` header.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from autellix_engine.core.wire import POLICY_HEADER
from autellix_engine.frontend.engine import AutellixEngine
from autellix_engine.frontend.engine_client import (
    CALL_IDENTITY,
    CallIdentity,
    ProgramEngineClient,
)
from autellix_engine.frontend.models import resolve_model
from autellix_engine.frontend.vllm_args import engine_kwargs, to_cli
from autellix_engine.server.app import PROGRAM_HEADER, THREAD_HEADER, _Server
from autellix_engine.server.body import check_id
from autellix_engine.server.errors import RequestError
from autellix_engine.server.settings import ServerSettings
from autellix_engine.server.spans import TRACE_HEADERS, CallSpan


def vllm_server_args(engine: AutellixEngine, settings: ServerSettings,
                     frontend_flags: Sequence[str] = ()) -> argparse.Namespace:
    """``vllm serve``'s arguments for this engine: the engine arguments the replicas
    run (so served name, parsers and structured outputs agree with them) and
    ``frontend_flags`` (``vllm serve``'s server flags), parsed by vLLM's own parser."""
    from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    config = engine.config
    model = resolve_model(config.model, config.vllm_kwargs.get("revision"))
    argv = [*to_cli(engine_kwargs(config, model)), *frontend_flags,
            "--host", settings.host, "--port", str(settings.port)]
    args = make_arg_parser(FlexibleArgumentParser(prog="autellix serve")).parse_args(argv)
    if settings.api_keys:
        args.api_key = list(settings.api_keys)
    validate_parsed_serve_args(args)
    return args


async def build_vllm_app(engine: AutellixEngine, settings: ServerSettings | None = None,
                         frontend_flags: Sequence[str] = ()) -> Any:
    """vLLM's OpenAI application over a started ``engine``: an ASGI app (vLLM's
    FastAPI app inside ours; ``.state`` is its state)."""
    from vllm.entrypoints.launchers.api_server.app_state import init_app_state
    from vllm.entrypoints.launchers.app import build_app

    settings = settings or ServerSettings()
    server = _Server(engine, settings)
    args = vllm_server_args(engine, settings, frontend_flags)
    served = (args.served_model_name or [args.model])[0]
    client = ProgramEngineClient(engine, admit=_graceful(server._admit_program),
                                 max_tokens_limit=settings.max_tokens_limit,
                                 observe=_call_spans(served, engine.config.policy))
    tasks = await client.get_supported_tasks()
    app = build_app(args, tasks, client.model_config)
    await init_app_state(client, app.state, args, tasks)
    for path, handler, methods in (
            ("/v1/programs/{program_id}", server.program, ["GET", "PUT", "DELETE"]),
            ("/health/ready", server.ready, ["GET"]),
            ("/health/live", server.live, ["GET"]),
            ("/autellix/metrics", server.metrics, ["GET"])):
        app.add_route(path, _answering_errors(handler), methods=methods)
    app.state.server = server
    # Around vLLM's app (its middleware stack is built already): outermost.
    return _CallScope(app, server)


def _call_spans(model: str, policy: str) -> Any:
    """Each call's server span (``spans.CallSpan``: the caller's trace, the GenAI
    attributes, the scheduler's record), the same as the default layer's."""

    def observe(identity: CallIdentity, request_id: str, program_id: str | None,
                params: Any) -> CallSpan:
        route = identity.route
        return CallSpan(identity.headers, route, chat=not route.endswith("/completions")
                        or route.endswith("/chat/completions"), model=model, policy=policy,
                        response_id=request_id, program_id=program_id,
                        params={"max_tokens": params.max_tokens,
                                "temperature": params.temperature})

    return observe


def _graceful(admit: Any) -> Any:
    """``admit`` raising vLLM's ``GracefulHTTPError`` (vLLM's layer answers it with its
    status) instead of our ``RequestError``."""
    from vllm.exceptions import GracefulHTTPError

    def check(scope: str) -> None:
        try:
            admit(scope)
        except RequestError as e:
            raise GracefulHTTPError(str(e), HTTPStatus(e.status)) from None

    return check


def _answering_errors(handler: Any) -> Any:
    """Our handlers raise ``RequestError``; in vLLM's app it must become its response
    here (vLLM's exception handlers would make it a 400 whatever its status)."""

    async def endpoint(request: Request) -> Any:
        try:
            return await handler(request)
        except RequestError as e:
            return JSONResponse(e.body(), status_code=e.status)

    return endpoint


class _CallScope:
    """Pure ASGI middleware: the request's program scope and headers, for the engine
    client (``CALL_IDENTITY``), and the limits that hold before a body is read."""

    def __init__(self, app: ASGIApp, server: _Server) -> None:
        self.app, self.server = app, server

    @property
    def state(self) -> Any:
        return self.app.state  # type: ignore[attr-defined]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            identity = self._identity(scope, headers)
        except RequestError as e:
            await JSONResponse(e.body(), status_code=e.status)(scope, receive, send)
            return
        policy = self.server.engine.config.policy.encode()

        async def send_with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  (POLICY_HEADER.lower().encode(), policy)]}
            await send(message)

        token = CALL_IDENTITY.set(identity)
        try:
            await self.app(scope, receive, send_with_policy)
        finally:
            CALL_IDENTITY.reset(token)

    def _identity(self, scope: Scope, headers: Headers) -> CallIdentity:
        if scope["method"] == "POST":
            if self.server.draining:
                raise RequestError("The server is shutting down", status=503)
            length = headers.get("content-length")
            limit = self.server.settings.max_body_bytes
            if length is None and headers.get("transfer-encoding"):
                raise RequestError("Send a Content-Length", status=411)
            if length is not None and (not length.isdigit() or int(length) > limit):
                raise RequestError(f"The request body may be at most {limit} bytes",
                                   status=413)
        try:
            key_scope = self.server._scope(Request(scope))
        except RequestError:
            key_scope = "invalid"  # vLLM's authentication answers 401 on /v1 routes
        program = headers.get(PROGRAM_HEADER)
        thread = headers.get(THREAD_HEADER)
        trace_context = {h: headers[h] for h in TRACE_HEADERS if h in headers}
        return CallIdentity(key_scope, check_id(program, PROGRAM_HEADER) if program else None,
                            check_id(thread, THREAD_HEADER) if thread else "main",
                            scope["path"], trace_context)
