"""Whether a vLLM engine can still take and finish work (vLLM 0.32 glue).

vLLM's own health check (``AsyncLLM.check_health``, behind ``vllm serve``'s
``/health``) reports only an engine-core *process* that died. An engine core whose
input thread died (one request it could not decode is enough) or whose busy loop
stopped keeps its process, so ``/health`` answers 200 while every call hangs.

:func:`engine_answers` asks the engine core a question through the same path a call
takes: a utility request (``is_sleeping``) goes in through its input socket, is
answered by its busy loop between two steps, and comes back through its output
socket. An answer within the timeout shows all three work.

A core that misses a probe is reported unhealthy (it leaves the pool; ``/health``
answers 503) but may only be slow: on a loaded CPU host one step can outlast a probe.
:class:`Liveness` declares it dead only when it has stayed silent for the stall
timeout: every call waiting on it then fails at once with vLLM's ``EngineDeadError``
(the front end retries those that produced no token on another replica), and
``vllm serve``'s own watchdog stops the server, so a supervisor (``autellix
replica``, Kubernetes) restarts it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

#: Seconds an engine core may take to answer a probe (``EngineConfig.health_timeout_s``
#: for embedded engines, the ``AUTELLIX_HEALTH_TIMEOUT_S`` variable in ``vllm serve``).
#: It waits for the step in progress: the longest step seen here is a few seconds (a
#: 2,048-token prefill of SmolLM2 on 2 CPU cores); GPU steps take well under one.
DEFAULT_TIMEOUT_S = 10.0
TIMEOUT_ENV = "AUTELLIX_HEALTH_TIMEOUT_S"

#: Seconds a core may stay silent (every probe unanswered) before it is declared dead
#: (``EngineConfig.stall_timeout_s``; ``AUTELLIX_STALL_TIMEOUT_S`` in ``vllm serve``).
#: On a 2-core CPU host running a front end and two replicas under load, a healthy
#: replica once missed a 10 s probe; a core whose input thread died never answers,
#: so waiting longer only delays its restart.
DEFAULT_STALL_S = 60.0
STALL_ENV = "AUTELLIX_STALL_TIMEOUT_S"


def _seconds_from_env(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        return default
    return value if value > 0 else default


class Liveness:
    """Probes one engine and declares it dead once it has been silent too long."""

    def __init__(self, timeout_s: float, stall_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout_s = timeout_s
        self.stall_s = max(stall_s, timeout_s)
        self._clock = clock
        self._silent_since: float | None = None

    @classmethod
    def from_env(cls) -> Liveness:
        """The settings of a ``vllm serve`` process (its environment variables)."""
        return cls(_seconds_from_env(TIMEOUT_ENV, DEFAULT_TIMEOUT_S),
                   _seconds_from_env(STALL_ENV, DEFAULT_STALL_S))

    async def check(self, llm: Any) -> bool:
        """True when ``llm`` answers a probe now; a core silent for the stall timeout
        is declared dead (its calls fail; it must be restarted)."""
        started = self._clock()
        if await engine_answers(llm, self.timeout_s):
            self._silent_since = None
            return True
        if llm.errored:
            return False
        if self._silent_since is None:
            self._silent_since = started
        silent = self._clock() - self._silent_since
        if silent >= self.stall_s:
            declare_dead(llm, f"no answer to any probe for {silent:.0f} s")
            self._silent_since = None
        else:
            logger.warning("The engine core did not answer a probe within %s s (silent for "
                           "%.0f s; declared dead after %s s)", self.timeout_s, silent,
                           self.stall_s)
        return False


async def engine_answers(llm: Any, timeout_s: float) -> bool:
    """True when ``llm``'s (an ``AsyncLLM``) engine core answers within ``timeout_s``."""
    if llm.errored:
        return False
    try:
        await asyncio.wait_for(llm.is_sleeping(), timeout_s)
    except TimeoutError:
        return False
    except Exception:  # noqa: BLE001 - a dead engine raises EngineDeadError
        return False
    return True


def declare_dead(llm: Any, reason: str) -> None:
    """Mark ``llm``'s engine dead: waiting calls fail now, new ones are refused."""
    from vllm.v1.engine.exceptions import EngineDeadError

    logger.error("The engine core is not answering (%s); declaring it dead", reason)
    llm.engine_core.resources.engine_dead = True
    llm.output_processor.propagate_error(EngineDeadError())
    handler = getattr(llm, "output_handler", None)
    if handler is not None:
        handler.cancel()  # it would wait on the silent core forever


def install_probe() -> bool:
    """In ``vllm serve``'s API-server process (our vLLM plugin): make vLLM's health
    check (``/health``) probe the engine core, so a silent core gets 503 and, silent
    for the stall timeout, is declared dead (vLLM's watchdog then stops the server
    for its supervisor to restart). vLLM has no hook for this; the method is wrapped,
    and a vLLM whose ``check_health`` differs is left alone."""
    import functools
    import inspect

    from vllm.v1.engine.async_llm import AsyncLLM

    original = AsyncLLM.check_health
    if getattr(original, "_autellix_probe", False):
        return True
    if tuple(inspect.signature(original).parameters) != ("self",):
        logger.warning("vLLM's AsyncLLM.check_health changed; /health will not probe "
                       "the engine core")
        return False
    liveness = Liveness.from_env()  # one engine per API-server process

    @functools.wraps(original)
    async def check_health(self: Any) -> None:
        await original(self)  # raises EngineDeadError for a dead engine-core process
        if not await liveness.check(self):
            raise self.dead_error

    check_health._autellix_probe = True  # type: ignore[attr-defined]
    AsyncLLM.check_health = check_health
    return True
