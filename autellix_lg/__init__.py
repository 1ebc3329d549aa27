"""LangGraph integration: ``AutellixChatModel`` and automatic program tagging."""

from autellix_lg.chat_model import AutellixChatModel
from autellix_lg.clients import CallTimeoutError, EngineUnavailableError
from autellix_lg.programs import PROGRAM_ID_KEY, AutellixCallbackHandler
from autellix_lg.telemetry import configure_tracing

__all__ = [
    "PROGRAM_ID_KEY",
    "AutellixCallbackHandler",
    "AutellixChatModel",
    "CallTimeoutError",
    "EngineUnavailableError",
    "configure_tracing",
]
