"""Tracing: span attribute names, a call's statistics as attributes, exporter setup.

Shared by the server's spans (``autellix_engine.server``) and the chat model's
(``autellix_lg``), so a trace reads the same in embedded and remote mode.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from dataclasses import fields

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from autellix_engine.core.stats import CallStats

# --- GenAI semantic conventions (names as in opentelemetry-semantic-conventions) ------
OPERATION = "gen_ai.operation.name"  # "chat", "text_completion", "invoke_workflow", ...
PROVIDER = "gen_ai.provider.name"  # "autellix"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_ID = "gen_ai.response.id"
REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
REQUEST_TEMPERATURE = "gen_ai.request.temperature"
RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
CONVERSATION_ID = "gen_ai.conversation.id"  # LangGraph's configurable thread_id
# --- HTTP semantic conventions (the server's spans) -----------------------------------
HTTP_METHOD = "http.request.method"
HTTP_ROUTE = "http.route"
HTTP_STATUS = "http.response.status_code"
URL_PATH = "url.path"
ERROR_TYPE = "error.type"

# --- Autellix: program scheduling ------------------------------------------------------

PROGRAM_ID = "autellix.program.id"
THREAD_ID = "autellix.thread.id"
CALL_ID = "autellix.call.id"
POLICY = "autellix.policy"
QUEUE_LEVEL = "autellix.queue.level"  # queue at completion (0 = top)
QUEUE_START_LEVEL = "autellix.queue.start_level"  # queue on arrival
QUEUE_WAIT_S = "autellix.queue.wait_s"  # unscheduled seconds in the engine
PREEMPTIONS = "autellix.preemptions"
SERVICE = "autellix.service"  # attained service of the call (policy's unit)
PREFILL_S = "autellix.engine.prefill_s"  # engine time computing the prompt
DECODE_S = "autellix.engine.decode_s"  # engine time decoding
TIME_TO_FIRST_TOKEN_S = "autellix.time_to_first_token_s"
#: Prefix of every ``CallStats`` field on a chat span (``autellix.call.<field>``).
CALL_STATS_PREFIX = "autellix.call."


def call_stats(stats: CallStats) -> dict[str, float | int]:
    """A call's statistics as span attributes: the named ones above, and every
    ``CallStats`` field (swap counters too) as ``autellix.call.<field>``, so a new
    statistic reaches the spans without a change here."""
    attrs: dict[str, float | int] = {
        QUEUE_LEVEL: stats.level, QUEUE_START_LEVEL: stats.start_level,
        QUEUE_WAIT_S: stats.queue_wait_s, PREEMPTIONS: stats.preemptions,
        SERVICE: stats.service, PREFILL_S: stats.prefill_s, DECODE_S: stats.decode_s,
    }
    for f in fields(stats):
        value = getattr(stats, f.name)
        if f.name == "swap":
            attrs |= {f"{CALL_STATS_PREFIX}swap.{g.name}": getattr(value, g.name)
                      for g in fields(value)}
        else:
            attrs[f"{CALL_STATS_PREFIX}{f.name}"] = value
    return attrs


# --- exporter setup ------------------------------------------------------------------
_lock = threading.Lock()
_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def otlp_protocol() -> str:
    """The OTLP protocol the standard variables choose (default ``http/protobuf``)."""
    return os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                          os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")) or "http/protobuf"


def otlp_traces_endpoint() -> str | None:
    """The traces endpoint the standard variables name, as an exporter takes it
    explicitly (vLLM's ``--otlp-traces-endpoint``): for ``http/protobuf`` the base
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` gets ``/v1/traces``, as the SDK itself appends."""
    full = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if full:
        return full
    base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not base:
        return None
    return base if otlp_protocol() == "grpc" else base.rstrip("/") + "/v1/traces"


def _otlp_exporter() -> SpanExporter:
    protocol = otlp_protocol()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    elif protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    else:
        raise ValueError(f"Unsupported OTLP protocol {protocol!r} (http/protobuf or grpc)")
    return OTLPSpanExporter()


def configure_tracing(
    exporter: SpanExporter | None = None, *, only_if_env: bool = False,
    service_name: str = "autellix-lg",
) -> TracerProvider | None:
    """Install a global tracer provider exporting to ``exporter`` (default: OTLP, from
    the standard ``OTEL_EXPORTER_OTLP_*`` variables).

    ``AutellixChatModel`` calls it on first use and ``autellix serve`` at start, with
    ``only_if_env``: setting ``OTEL_EXPORTER_OTLP_ENDPOINT`` (Jaeger:
    ``http://localhost:4318``) is enough. ``OTEL_SERVICE_NAME`` overrides
    ``service_name``; ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`` /
    ``OTEL_EXPORTER_OTLP_PROTOCOL`` picks ``http/protobuf`` (default) or ``grpc``.

    Returns the provider, or None when nothing was installed: ``only_if_env`` and no
    OTLP endpoint variable is set, or an SDK provider is already installed (an
    application's own provider wins).
    """
    with _lock:
        if isinstance(trace.get_tracer_provider(), TracerProvider):
            return None
        if exporter is None and only_if_env and not any(os.environ.get(v) for v in _ENDPOINT_VARS):
            return None
        service = os.environ.get("OTEL_SERVICE_NAME", service_name)
        provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}))
        provider.add_span_processor(BatchSpanProcessor(exporter or _otlp_exporter()))
        trace.set_tracer_provider(provider)
        return provider


class OTLPJsonFileExporter(SpanExporter):
    """Spans as OTLP JSON Lines in a file: one ``ExportTraceServiceRequest`` per line,
    ids in hex, as the OpenTelemetry Collector's ``file`` exporter writes them (so
    ``autellix bench --trace`` reads either). The SDK ships no file exporter."""

    def __init__(self, path: str | os.PathLike) -> None:
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in shutdown
        self._lock = threading.Lock()

    def export(self, spans) -> SpanExportResult:
        from google.protobuf.json_format import MessageToDict
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

        request = MessageToDict(encode_spans(spans))
        for rs in request.get("resourceSpans", ()):
            for ss in rs.get("scopeSpans", ()):
                for span in ss.get("spans", ()):
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if span.get(key):
                            span[key] = base64.b64decode(span[key]).hex()
        with self._lock:
            self._file.write(json.dumps(request, separators=(",", ":")) + "\n")
            self._file.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            self._file.close()
