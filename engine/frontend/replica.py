"""``autellix replica``: a stock ``vllm serve`` with our scheduler, supervised.

The server runs as a child process in its own process group. This process

- passes SIGTERM and SIGINT on to it (``vllm serve`` then stops its engine core and
  exits), and after ``stop_timeout_s`` kills the whole group, so no engine process
  outlives a stop;
- starts it again when it exits without being asked to: our vLLM plugin makes
  ``/health`` probe the engine core and declares a core dead once it has stayed
  silent for ``AUTELLIX_STALL_TIMEOUT_S`` (default 60 s), after which
  vLLM's own watchdog stops the server (``autellix_engine.extension.liveness``). A front end
  meanwhile routes around the replica and takes it back when ``/health`` passes.

It gives up (exit status 1) after ``max_restarts`` restarts in a row that each ran
less than ``STABLE_S``: a server that cannot start is a configuration error, not a
fault to retry forever.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Sequence

logger = logging.getLogger(__name__)

#: A server that ran this long before exiting was working: its restart count resets.
STABLE_S = 120.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def supervise(cmd: Sequence[str], *, stop_timeout_s: float = 30.0,
              max_restarts: int = 5, restart_delay_s: float = 2.0) -> int:
    """Run ``cmd`` until a stop signal; returns the exit status for this process."""
    stopping: list[int] = []
    child: subprocess.Popen | None = None

    def on_signal(sig: int, frame: object) -> None:
        stopping.append(sig)
        if child is not None and child.poll() is None:
            _signal_group(child, sig if len(stopping) == 1 else signal.SIGKILL)

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    restarts = 0
    try:
        while True:
            began = time.monotonic()
            child = subprocess.Popen(list(cmd), start_new_session=True, env=environment())
            status = _wait(child, stopping, stop_timeout_s)
            if stopping:
                return 0
            ran = time.monotonic() - began
            restarts = 0 if ran >= STABLE_S else restarts + 1
            if restarts > max_restarts:
                logger.error("vllm serve exited %d times in a row within %.0f s of starting "
                             "(last status %s); giving up", restarts, STABLE_S, status)
                return 1
            logger.warning("vllm serve exited (status %s) after %.0f s; starting it again",
                           status, ran)
            time.sleep(restart_delay_s)
            if stopping:
                return 0
    finally:
        if child is not None and child.poll() is None:
            _signal_group(child, signal.SIGKILL)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait(child: subprocess.Popen, stopping: list[int], stop_timeout_s: float) -> int:
    """The child's exit status; once a stop began, at most ``stop_timeout_s`` more,
    then the whole process group is killed."""
    deadline: float | None = None
    while True:
        try:
            return child.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass
        if stopping and deadline is None:
            deadline = time.monotonic() + stop_timeout_s
        if deadline is not None and time.monotonic() > deadline:
            logger.warning("vllm serve did not stop within %.0f s: killing it", stop_timeout_s)
            _signal_group(child, signal.SIGKILL)
            return child.wait()


def _signal_group(child: subprocess.Popen, sig: int) -> None:
    """Signal the server (SIGKILL: its whole process group, engine core included)."""
    try:
        if sig == signal.SIGKILL:
            os.killpg(child.pid, sig)
        else:
            child.send_signal(sig)
    except ProcessLookupError:
        pass


def environment() -> dict[str, str]:
    """The server's environment: offline model hub; with an OTLP endpoint in the
    standard variables, vLLM's tracing speaks our default protocol and names its
    service."""
    from autellix_engine.frontend.telemetry import otlp_protocol, otlp_traces_endpoint

    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    if otlp_traces_endpoint():
        env.setdefault("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", otlp_protocol())
        env.setdefault("OTEL_SERVICE_NAME", "autellix-replica")
    return env
