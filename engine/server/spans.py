"""The server's span of one completion request (OpenTelemetry).

It joins the caller's trace (``traceparent``/``tracestate`` headers) as a SERVER span,
and its own context goes to the engine with the call, so a trace reads client ->
server -> engine (vLLM's ``llm_request`` span, when vLLM's tracing is on) in remote mode
as in embedded mode. With no tracer provider configured it records nothing and passes
the caller's context through unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from autellix_engine import telemetry
from autellix_engine.results import CallResult

TRACE_HEADERS = ("traceparent", "tracestate")
_PROPAGATOR = TraceContextTextMapPropagator()


class CallSpan:
    """A request's span; :attr:`trace_context` is what the engine call carries."""

    def __init__(self, headers: Mapping[str, str], name: str, program_id: str | None) -> None:
        carrier = {h: headers[h] for h in TRACE_HEADERS if h in headers}
        parent = _PROPAGATOR.extract(carrier)
        self.span = trace.get_tracer("autellix_engine.server").start_span(
            name, context=parent, kind=SpanKind.SERVER)
        if program_id:
            self.span.set_attribute(telemetry.PROGRAM_ID, program_id)
        self.trace_context: dict[str, str] = {}
        _PROPAGATOR.inject(self.trace_context, context=trace.set_span_in_context(self.span))
        self._ended = False

    def finish(self, result: CallResult | None = None,
               error: BaseException | None = None) -> None:
        """End the span once, with the call's statistics or its error."""
        if self._ended:
            return
        self._ended = True
        if result is not None:
            self.span.set_attributes({telemetry.CALL_ID: result.call_id,
                                      telemetry.THREAD_ID: result.thread_id,
                                      **telemetry.call_stats(result.stats)})
        if error is not None:
            self.span.set_status(Status(StatusCode.ERROR, str(error)))
        self.span.end()
