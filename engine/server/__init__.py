"""OpenAI-compatible, program-aware HTTP server over the embedded engine."""

from autellix_engine.server.app import build_app
from autellix_engine.server.settings import ServerSettings

__all__ = ["ServerSettings", "build_app"]
