"""Exporter setup from the standard ``OTEL_*`` environment variables.

``configure_tracing()`` installs a global ``TracerProvider`` exporting spans with the
OTLP exporter. The exporter reads the standard variables itself:
``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (Jaeger:
``http://localhost:4318``), ``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_SERVICE_NAME``
(default ``autellix-lg``), and ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`` /
``OTEL_EXPORTER_OTLP_PROTOCOL`` (``http/protobuf``, the default here, or ``grpc`` when
``opentelemetry-exporter-otlp-proto-grpc`` is installed).

``AutellixChatModel`` calls ``configure_tracing(only_if_env=True)`` on first use, so
setting ``OTEL_EXPORTER_OTLP_ENDPOINT`` is enough to see traces in Jaeger; an
application that installs its own provider first keeps it.
"""

from __future__ import annotations

import os
import threading

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

_lock = threading.Lock()
_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def _otlp_exporter() -> SpanExporter:
    protocol = os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    ) or "http/protobuf"
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    elif protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    else:
        raise ValueError(f"Unsupported OTLP protocol {protocol!r} (http/protobuf or grpc)")
    return OTLPSpanExporter()


def configure_tracing(
    exporter: SpanExporter | None = None, *, only_if_env: bool = False
) -> TracerProvider | None:
    """Install a global tracer provider exporting to ``exporter`` (default: OTLP).

    Returns the provider, or None when nothing was installed: ``only_if_env`` and no
    OTLP endpoint variable is set, or an SDK provider is already installed.
    """
    with _lock:
        if isinstance(trace.get_tracer_provider(), TracerProvider):
            return None
        if exporter is None and only_if_env and not any(os.environ.get(v) for v in _ENDPOINT_VARS):
            return None
        service = os.environ.get("OTEL_SERVICE_NAME", "autellix-lg")
        provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}))
        provider.add_span_processor(BatchSpanProcessor(exporter or _otlp_exporter()))
        trace.set_tracer_provider(provider)
        return provider
