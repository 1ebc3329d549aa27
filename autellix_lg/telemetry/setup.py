"""Exporter setup: :func:`autellix_engine.frontend.telemetry.configure_tracing`, re-exported."""

from autellix_engine.frontend.telemetry import configure_tracing

__all__ = ["configure_tracing"]
