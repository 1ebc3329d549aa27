"""The program-aware OpenAI server: vLLM's own OpenAI layer over the front end."""

from autellix_engine.server.app import build_app
from autellix_engine.server.settings import ServerSettings

__all__ = ["ServerSettings", "build_app"]
