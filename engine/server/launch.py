"""``autellix serve``: start the engine, serve, and stop cleanly on SIGTERM or SIGINT.

A stop (SIGTERM from Kubernetes or systemd, or Ctrl-C) goes in this order:

1. readiness fails and new calls get 503; uvicorn stops accepting connections;
2. calls in flight have ``ServerSettings.shutdown_timeout_s`` to finish;
3. calls still running then fail with a clear error (an SSE error event, or a 503),
   and every engine process stops (``AutellixEngine.aclose``);
4. the process exits with status 0.

A second signal skips the wait. A signal while the engine is still starting stops
the start and the processes it began. uvicorn's own signal handling is off: after a
graceful stop it raises the signal again, and SIGTERM's default action then kills
the process before the engine is closed, leaving ``VLLM::EngineCore`` orphaned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator, Sequence

import uvicorn

from autellix_engine.frontend.config import EngineConfig
from autellix_engine.frontend.engine import AutellixEngine
from autellix_engine.server.app import build_app
from autellix_engine.server.settings import ServerSettings

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
#: Seconds uvicorn waits for connections beyond the calls' own grace (their error
#: events must still go out).
CLOSE_MARGIN_S = 5.0


class _Uvicorn(uvicorn.Server):
    """uvicorn without its signal handlers (``serve`` installs ours on the loop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def serve(config: EngineConfig, settings: ServerSettings, *,
          frontend_flags: Sequence[str] = ()) -> int:
    """Run the server until a stop signal; returns the exit status.

    ``frontend_flags``: ``vllm serve``'s server flags, for vLLM's application.
    """
    from autellix_engine.frontend.telemetry import configure_tracing

    configure_tracing(only_if_env=True, service_name="autellix-serve")
    try:
        return asyncio.run(_serve(config, settings, frontend_flags))
    except (asyncio.CancelledError, KeyboardInterrupt):
        return 0  # stopped while starting: the engine's processes were stopped


async def _serve(config: EngineConfig, settings: ServerSettings,
                 frontend_flags: Sequence[str]) -> int:
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    stopping, hurry = asyncio.Event(), asyncio.Event()
    server: _Uvicorn | None = None

    def on_signal(sig: signal.Signals) -> None:
        if server is None:
            logger.warning("%s while starting: stopping", sig.name)
            assert main is not None
            main.cancel()
        elif stopping.is_set():
            logger.warning("%s again: ending the calls in flight now", sig.name)
            hurry.set()
            server.force_exit = True
        else:
            logger.warning("%s: shutting down (calls in flight have %.0f s)", sig.name,
                           settings.shutdown_timeout_s)
            stopping.set()
            server.should_exit = True

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        async with AutellixEngine(config) as engine:
            app = await build_app(engine, settings, frontend_flags)
            server = _Uvicorn(uvicorn.Config(
                app, host=settings.host, port=settings.port, log_level="warning",
                timeout_graceful_shutdown=settings.shutdown_timeout_s + CLOSE_MARGIN_S))
            drain = asyncio.create_task(_drain(engine, app.state.server, stopping, hurry,
                                               settings))
            try:
                await server.serve()
            finally:
                stopping.set()
                await drain
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
    return 0


async def _drain(engine: AutellixEngine, server: object, stopping: asyncio.Event,
                 hurry: asyncio.Event, settings: ServerSettings) -> None:
    """After a stop: refuse new calls, give running ones their grace (cut short by a
    second signal), then end them."""
    await stopping.wait()
    server.draining = True  # type: ignore[attr-defined]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.shutdown_timeout_s
    while engine.active_calls() and loop.time() < deadline and not hurry.is_set():
        await asyncio.sleep(0.1)
    left = engine.active_calls()
    if left:
        logger.warning("Ending %d calls still running at shutdown", left)
    await engine.aclose()  # remaining calls fail with EngineNotRunningError
