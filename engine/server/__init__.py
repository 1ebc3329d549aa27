"""OpenAI-compatible, program-aware HTTP server over the embedded engine."""

from engine.server.app import build_app
from engine.server.settings import ServerSettings

__all__ = ["ServerSettings", "build_app"]
