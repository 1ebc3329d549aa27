"""The server's span of one completion request (OpenTelemetry).

It joins the caller's trace (``traceparent``/``tracestate`` headers) as a SERVER span,
and its own context goes to the engine with the call, so a trace reads client ->
server -> engine (vLLM's ``llm_request`` span, when vLLM's tracing is on) in remote mode
as in embedded mode. Attributes follow the HTTP (``http.*``, ``url.*``) and GenAI
(``gen_ai.*``) semantic conventions, plus the call's scheduling record
(``autellix.*``); the call id is the one the client's ``chat`` span carries. With no
tracer provider configured it records nothing and passes the caller's context through.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from autellix_engine.frontend import telemetry as T
from autellix_engine.frontend.results import CallResult

TRACE_HEADERS = ("traceparent", "tracestate")
_PROPAGATOR = TraceContextTextMapPropagator()


class CallSpan:
    """A request's span; :attr:`trace_context` is what the engine call carries."""

    def __init__(self, headers: Mapping[str, str], path: str, *, chat: bool, model: str,
                 policy: str, response_id: str, program_id: str | None,
                 params: Mapping[str, Any]) -> None:
        carrier = {h: headers[h] for h in TRACE_HEADERS if h in headers}
        parent = _PROPAGATOR.extract(carrier)
        attrs: dict[str, Any] = {
            T.HTTP_METHOD: "POST", T.HTTP_ROUTE: path, T.URL_PATH: path,
            T.OPERATION: "chat" if chat else "text_completion", T.PROVIDER: "autellix",
            T.REQUEST_MODEL: model, T.RESPONSE_ID: response_id, T.POLICY: policy}
        if program_id:
            attrs[T.PROGRAM_ID] = program_id
        if params.get("max_tokens") is not None:
            attrs[T.REQUEST_MAX_TOKENS] = params["max_tokens"]
        if params.get("temperature") is not None:
            attrs[T.REQUEST_TEMPERATURE] = params["temperature"]
        self.model = model
        self.span = trace.get_tracer("autellix_engine.server").start_span(
            f"POST {path}", context=parent, kind=SpanKind.SERVER, attributes=attrs)
        self.trace_context: dict[str, str] = {}
        _PROPAGATOR.inject(self.trace_context, context=trace.set_span_in_context(self.span))
        self._ended = False

    def finish(self, result: CallResult | None = None,
               error: BaseException | None = None, status: int | None = None) -> bool:
        """End the span once, with the call's statistics or its error; False when it
        had ended already."""
        if self._ended:
            return False
        self._ended = True
        if result is not None:
            self.span.set_attributes({
                T.CALL_ID: result.call_id, T.THREAD_ID: result.thread_id,
                T.RESPONSE_MODEL: self.model, T.RESPONSE_FINISH_REASONS: [result.finish_reason],
                T.USAGE_INPUT_TOKENS: result.usage.prompt_tokens,
                T.USAGE_OUTPUT_TOKENS: result.usage.completion_tokens,
                **T.call_stats(result.stats)})
            if result.time_to_first_token_s is not None:
                self.span.set_attribute(T.TIME_TO_FIRST_TOKEN_S, result.time_to_first_token_s)
        if error is not None:
            status = status or getattr(error, "status", None) or 500
            self.span.set_attribute(T.ERROR_TYPE, type(error).__qualname__)
            self.span.set_status(Status(StatusCode.ERROR, str(error)))
        if status is not None or result is not None:
            self.span.set_attribute(T.HTTP_STATUS, status or 200)
        self.span.end()
        return True
