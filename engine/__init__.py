"""Program-aware serving on vLLM (Autellix's PLAS/ATLAS scheduling): the public API.

The package has four layers, each a folder, each importing only the ones before it:

* ``core``: pure scheduling logic (policies, process table, routing, retention and
  swap planning, the wire format, the errors): no vLLM, no torch. The simulator
  (``autellix_workloads.sim``) runs on this alone.
* ``extension``: what vLLM loads by name inside its own processes (the scheduler in
  the engine core, the swap connector in the workers, the plugin in every process).
* ``frontend``: the user's process: ``AutellixEngine``, its replicas (back ends),
  configuration, model resolution, the command line.
* ``server``: the HTTP server over a front end.

The engine is imported lazily, so that ``core`` and the simulator stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autellix_engine.core import CallStats, PolicyConfig, ProgramSnapshot
from autellix_engine.core.errors import (
    AutellixError,
    EngineNotRunningError,
    InvalidRequestError,
    ModelError,
    ProgramEndedError,
    PromptTooLongError,
    ReplicaError,
    UnknownProgramError,
)
from autellix_engine.frontend.config import EngineConfig
from autellix_engine.frontend.logs import quiet_vllm_defaults
from autellix_engine.frontend.results import CallResult, StreamChunk, Usage

quiet_vllm_defaults()  # before anything imports vLLM: its logs go to stderr, at WARNING

if TYPE_CHECKING:
    from autellix_engine.frontend.engine import AutellixEngine, Program

__all__ = [
    "AutellixEngine",
    "AutellixError",
    "CallResult",
    "CallStats",
    "EngineConfig",
    "EngineNotRunningError",
    "InvalidRequestError",
    "ModelError",
    "PolicyConfig",
    "Program",
    "ProgramEndedError",
    "ProgramSnapshot",
    "PromptTooLongError",
    "ReplicaError",
    "StreamChunk",
    "UnknownProgramError",
    "Usage",
]


#: The vLLM scheduler classes under short, stable names for ``--scheduler-cls``:
#: ``autellix_engine.AutellixScheduler`` (no async scheduling: the CPU build) and
#: ``autellix_engine.AutellixAsyncScheduler`` (vLLM's GPU default). Imported lazily:
#: they need vLLM.
SCHEDULER_CLASSES = ("AutellixScheduler", "AutellixAsyncScheduler")


def __getattr__(name: str) -> Any:
    if name in ("AutellixEngine", "Program"):
        from autellix_engine.frontend import engine

        return getattr(engine, name)
    if name in SCHEDULER_CLASSES:
        from autellix_engine.extension import scheduler

        return getattr(scheduler, name)
    raise AttributeError(f"module 'autellix_engine' has no attribute {name!r}")
