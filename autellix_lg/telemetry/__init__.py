"""OpenTelemetry for programs and calls: attribute names, span helpers, exporter setup."""

from autellix_lg.telemetry.setup import configure_tracing

__all__ = ["configure_tracing"]
