"""The server: ``vllm serve``'s own OpenAI application over our front end.

vLLM's FastAPI application (chat, completions, responses, tokenize, detokenize,
version, docs, its tool and reasoning parsers, its ``/health`` and ``/metrics``), built
by vLLM's ``build_app`` and ``init_app_state``, drives
:class:`~autellix_engine.frontend.engine_client.ProgramEngineClient`, so every call runs
as part of its program on the replicas. Added to it (``programs.ProgramRoutes``):

- the program API, ``PUT|DELETE|GET /v1/programs/{id}``, ``/health/ready``,
  ``/health/live`` and ``/autellix/metrics`` (our series, then vLLM's);
- a middleware that gives each request its program scope (per API key), our program
  and thread headers, 413 for bodies over ``max_body_bytes``, 415 for a body that is
  not JSON, 503 while draining, and the ``X-Autellix-Policy`` response header;
- a new program per key within ``max_programs_per_key`` and ``program_rate_per_s``
  (429 beyond);
- each call's server span (``spans.CallSpan``) and our HTTP series.

Program identity: our ``X-Autellix-Program-Id`` header, else vLLM's ``session_id``
(body, ``X-Session-ID``, ``vllm_xargs``), else llm-d's fairness id; without any, a call
is a program of its own.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from autellix_engine.core.wire import POLICY_HEADER
from autellix_engine.frontend.engine import AutellixEngine
from autellix_engine.frontend.engine_client import (
    CALL_IDENTITY,
    CallIdentity,
    ProgramEngineClient,
)
from autellix_engine.frontend.models import resolve_model
from autellix_engine.frontend.results import CallResult
from autellix_engine.frontend.tool_envelope import ENVELOPE_PARSER
from autellix_engine.frontend.vllm_args import engine_kwargs, to_cli
from autellix_engine.server.errors import RequestError
from autellix_engine.server.metrics import ServerMetrics
from autellix_engine.server.programs import (
    GATEWAY_HEADER,
    PROGRAM_HEADER,
    THREAD_HEADER,
    ProgramRoutes,
    check_id,
)
from autellix_engine.server.request_check import REQUEST_MODELS, check_body
from autellix_engine.server.settings import ServerSettings
from autellix_engine.server.spans import TRACE_HEADERS, CallSpan

#: POST bodies other than JSON: vLLM's audio routes take form uploads. (JSON only
#: elsewhere: a page on another origin can POST text/plain or a form to a local server
#: without a CORS preflight; application/json needs one.)
FORM_ROUTES = ("/v1/audio/",)


def vllm_server_args(engine: AutellixEngine, settings: ServerSettings,
                     frontend_flags: Sequence[str] = ()) -> argparse.Namespace:
    """``vllm serve``'s arguments for this engine: the engine arguments the replicas
    run (so served name, parsers and structured outputs agree with them) and
    ``frontend_flags`` (``vllm serve``'s server flags), parsed by vLLM's own parser."""
    from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    import autellix_engine.frontend.envelope_parser  # noqa: F401 - registers our parser

    config = engine.config
    model = resolve_model(config.model, config.vllm_kwargs.get("revision"))
    argv = [*to_cli(engine_kwargs(config, model)), *frontend_flags,
            "--host", settings.host, "--port", str(settings.port)]
    args = make_arg_parser(FlexibleArgumentParser(prog="autellix serve")).parse_args(argv)
    if settings.api_keys:
        args.api_key = list(settings.api_keys)
    if args.tool_call_parser == ENVELOPE_PARSER:
        # It reads every tool choice, and vLLM hands required and named choices to such a
        # parser only with this flag: without it they would come back as the JSON text.
        args.enable_auto_tool_choice = True
    validate_parsed_serve_args(args)
    return args


async def build_app(engine: AutellixEngine, settings: ServerSettings | None = None,
                    frontend_flags: Sequence[str] = ()) -> Any:
    """The server for a started ``engine`` (one replica or many, embedded or remote):
    an ASGI app (vLLM's FastAPI app inside our middleware; ``.state`` is its state).

    ``frontend_flags``: ``vllm serve``'s server flags (``--chat-template``,
    ``--tool-call-parser``, ...), parsed by vLLM's own parser."""
    from vllm.entrypoints.launchers.api_server.app_state import init_app_state
    from vllm.entrypoints.launchers.app import build_app as build_vllm_app

    settings = settings or ServerSettings()
    server = ProgramRoutes(engine, settings)
    args = vllm_server_args(engine, settings, frontend_flags)
    served = (args.served_model_name or [args.model])[0]
    client = ProgramEngineClient(engine, admit=_graceful(server.admit_program),
                                 max_tokens_limit=settings.max_tokens_limit,
                                 observe=_observed_calls(served, engine.config.policy,
                                                         server.series))
    if args.tool_call_parser == ENVELOPE_PARSER:
        from autellix_engine.frontend.envelope_parser import wrapped_template

        args.chat_template = wrapped_template(args.chat_template, client.renderer.tokenizer)
    tasks = await client.get_supported_tasks()
    app = build_vllm_app(args, tasks, client.model_config)
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


class _ObservedCall:
    """One call as the server sees it: its span, and our HTTP series at its end (a
    latency, an error, or a call left early: aborted)."""

    def __init__(self, span: CallSpan, series: ServerMetrics) -> None:
        self.span, self.series = span, series
        self.trace_context = span.trace_context
        series.requests.inc()

    def finish(self, result: CallResult | None = None, error: BaseException | None = None,
               status: int | None = None) -> None:
        if not self.span.finish(result, error, status):
            return  # counted at its first end
        if result is not None:
            self.series.call_latency.observe(result.latency_s)
        elif error is not None:
            self.series.errors.inc()
        else:
            self.series.aborted.inc()


def _observed_calls(model: str, policy: str, series: ServerMetrics) -> Any:
    """Each call's observer: its server span (``spans.CallSpan``: the caller's trace, the
    GenAI attributes, the scheduler's record) and our series."""

    def observe(identity: CallIdentity, request_id: str, program_id: str | None,
                params: Any) -> _ObservedCall:
        route = identity.route
        span = CallSpan(identity.headers, route, chat=not route.endswith("/completions")
                        or route.endswith("/chat/completions"), model=model, policy=policy,
                        response_id=request_id, program_id=program_id,
                        params={"max_tokens": params.max_tokens,
                                "temperature": params.temperature})
        return _ObservedCall(span, series)

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
            return e.response()

    return endpoint


class _CallScope:
    """Pure ASGI middleware: the request's program scope and headers, for the engine
    client (``CALL_IDENTITY``), and the limits that hold before a body is read."""

    def __init__(self, app: ASGIApp, server: ProgramRoutes) -> None:
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
            await e.response()(scope, receive, send)
            return
        policy = self.server.engine.config.policy.encode()

        async def send_with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  (POLICY_HEADER.lower().encode(), policy)]}
            await send(message)

        if scope["method"] == "POST" and scope["path"] in REQUEST_MODELS:
            body = await _read_body(receive)  # its length was bounded by ``_identity``
            try:
                check_body(scope["path"], body)
            except RequestError as e:
                await e.response()(scope, receive, send)
                return
            receive = _replay(body, receive)
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
            kind = headers.get("content-type", "").split(";")[0].strip().lower()
            if (length not in (None, "0") and kind != "application/json"
                    and not scope["path"].startswith(FORM_ROUTES)):
                raise RequestError("Content-Type must be application/json", status=415)
            if length is None and headers.get("transfer-encoding"):
                raise RequestError("Send a Content-Length", status=411)
            if length is not None and (not length.isdigit() or int(length) > limit):
                raise RequestError(f"The request body may be at most {limit} bytes",
                                   status=413)
        try:
            key_scope = self.server.scope(Request(scope))
        except RequestError:
            key_scope = "invalid"  # vLLM's authentication answers 401 on /v1 routes
        program, thread, gateway = (headers.get(h) for h in (PROGRAM_HEADER, THREAD_HEADER,
                                                             GATEWAY_HEADER))
        trace_context = {h: headers[h] for h in TRACE_HEADERS if h in headers}
        return CallIdentity(key_scope, check_id(program, PROGRAM_HEADER) if program else None,
                            check_id(thread, THREAD_HEADER) if thread else "main",
                            scope["path"], trace_context,
                            check_id(gateway, GATEWAY_HEADER) if gateway else None)


async def _read_body(receive: Receive) -> bytes:
    """The whole request body (its length is bounded by the middleware first)."""
    parts = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(parts)


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` that gives the app the body read already, then the rest of the
    connection's messages (a disconnect)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
