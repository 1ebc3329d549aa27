"""LangGraph integration: ``AutellixChatModel`` and automatic program tagging."""

from autellix_lg.chat_model import AutellixChatModel
from autellix_lg.errors import (
    CallTimeoutError,
    ContextTooLongError,
    EndedProgramError,
    EngineFailedError,
    EngineUnavailableError,
    InvalidCallError,
    UnknownModelError,
)
from autellix_lg.programs import (
    PROGRAM_ID_KEY,
    PROGRAM_SCOPE_KEY,
    AutellixCallbackHandler,
    configure,
    end_thread,
    ending_programs,
)
from autellix_lg.sessions import current_program, with_program_session
from autellix_lg.telemetry import configure_tracing

__all__ = [
    "PROGRAM_ID_KEY",
    "PROGRAM_SCOPE_KEY",
    "AutellixCallbackHandler",
    "AutellixChatModel",
    "CallTimeoutError",
    "ContextTooLongError",
    "EndedProgramError",
    "EngineFailedError",
    "EngineUnavailableError",
    "InvalidCallError",
    "UnknownModelError",
    "configure",
    "configure_tracing",
    "current_program",
    "end_thread",
    "ending_programs",
    "with_program_session",
]
