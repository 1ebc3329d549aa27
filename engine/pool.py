"""Several engine replicas behind one process table and a router.

``EnginePool`` has the engine's API (``program``, ``generate``, ``stream``,
``programs``...), so the chat model and the server take it in place of one engine. Each
replica is its own vLLM engine process with its own scheduler; the front end keeps one
``ProcessTable`` for all of them, so a program's service counts wherever its calls ran,
and routes each call with ``autellix_engine.policy.routing`` (default: the paper's locality
balancer, Algorithm 2).

Replicas are embedded (``replicas=N``: each its own vLLM engine process) or remote
(``remote_urls``: stock ``vllm serve`` processes running our scheduler, see
``autellix_engine.remote``), in any mix.

Faults: a call that fails because its replica's engine is down marks the replica
unhealthy (its pinned programs are re-pinned) and is retried on another replica when it
had produced no token yet; otherwise it fails with ``EngineNotRunningError``. A health
monitor also takes replicas that stopped out of the pool, and brings them back when
healthy again: a remote replica when its ``/health`` answers, an embedded one after it
is restarted (``restart_embedded``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from autellix_engine.api import AutellixEngine, Program
from autellix_engine.config import EngineConfig
from autellix_engine.errors import EngineNotRunningError
from autellix_engine.policy import ProcessTable, ProgramSnapshot, create_policy
from autellix_engine.policy.routing import RouteInfo, create_router
from autellix_engine.remote import RemoteReplica
from autellix_engine.results import CallResult, StreamChunk

logger = logging.getLogger(__name__)


class EnginePool:
    """``replicas`` embedded engines plus one remote replica per URL in
    ``remote_urls``, all of one configuration, routed by ``routing``."""

    def __init__(self, config: EngineConfig, replicas: int = 2, routing: str = "locality",
                 threshold: int | None = None, *, remote_urls: Sequence[str] = (),
                 api_key: str | None = None, health_interval_s: float = 5.0,
                 restart_embedded: bool = True) -> None:
        policy = create_policy(config.policy, config.policy_config)
        self.config = config
        self.table = ProcessTable(policy.updated_program_service,
                                  ttl_s=config.policy_config.program_ttl_s)
        self.replicas: list[AutellixEngine] = [
            AutellixEngine(config, table=self.table, replica_id=i) for i in range(replicas)
        ]
        for url in remote_urls:
            self.replicas.append(RemoteReplica(url, config, table=self.table,
                                               replica_id=len(self.replicas), api_key=api_key))
        if not self.replicas:
            raise ValueError("a pool needs at least one replica (embedded or remote)")
        self.router = create_router(routing, len(self.replicas))
        if threshold is not None and hasattr(self.router, "threshold"):
            self.router.threshold = threshold
        self.health_interval_s = health_interval_s
        self.restart_embedded = restart_embedded
        self.rejoins = 0  # replicas brought back by the monitor
        self._monitor_task: asyncio.Task | None = None

    # -- lifecycle --------------------------------------------------------------------
    async def start(self) -> EnginePool:
        for eng in self.replicas:  # one at a time: 2 cores, and clearer errors
            await eng.start()
        self._monitor_task = asyncio.create_task(self._monitor())
        return self

    async def aclose(self) -> None:
        if self._monitor_task is not None:
            self._monitor_task.cancel()
            self._monitor_task = None
        for eng in self.replicas:
            await eng.aclose()

    async def _monitor(self) -> None:
        """Take stopped replicas out of the pool and bring healthy ones back."""
        while True:
            await asyncio.sleep(self.health_interval_s)
            for index in range(len(self.replicas)):
                try:
                    await self._check(index)
                except Exception:  # noqa: BLE001 - the monitor must survive anything
                    logger.exception("Health check of replica %d failed", index)

    async def _check(self, index: int) -> None:
        replica = self.replicas[index]
        if isinstance(replica, RemoteReplica):
            healthy = await replica.check_health()
        elif replica.is_running:
            healthy = True
        elif self.restart_embedded:
            healthy = await self._restart(index)
        else:
            healthy = False
        if healthy != self.router.healthy[index]:
            self.router.set_health(index, healthy)
            if healthy:
                self.rejoins += 1
            logger.warning("Replica %d %s the pool", index, "rejoined" if healthy else "left")

    async def _restart(self, index: int) -> bool:
        old = self.replicas[index]
        fresh = AutellixEngine(self.config, table=self.table, replica_id=index)
        try:
            await fresh.start()
        except Exception as e:  # noqa: BLE001 - try again at the next check
            logger.warning("Restarting replica %d failed: %s", index, e)
            await fresh.aclose()
            return False
        self.replicas[index] = fresh
        await old.aclose()
        return True

    async def __aenter__(self) -> EnginePool:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- the engine API ---------------------------------------------------------------
    @property
    def model_name(self) -> str:
        return self.config.model

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self.replicas[0].loop

    @property
    def is_running(self) -> bool:
        return any(eng.is_running for eng in self.replicas)

    @property
    def tokenizer(self) -> Any:
        return self._healthy()[0].tokenizer

    def program(self, program_id: str | None = None) -> Program:
        return Program(self, self.table.start_program(program_id))  # type: ignore[arg-type]

    def ensure_program(self, program_id: str) -> None:
        self.replicas[0].ensure_program(program_id)

    def end_program(self, program_id: str) -> ProgramSnapshot:
        if hasattr(self.router, "forget"):
            self.router.forget(program_id)
        return self.table.end_program(program_id)

    def programs(self) -> list[ProgramSnapshot]:
        return self.table.snapshot()

    async def generate(self, prompt: Any, **kwargs: Any) -> CallResult:
        result = None
        async for chunk in self.stream(prompt, **kwargs):
            result = chunk.result or result
        assert result is not None
        return result

    async def stream(self, prompt: Any, *, program_id: str | None = None,
                     **kwargs: Any) -> AsyncIterator[StreamChunk]:
        """Route one call (see ``AutellixEngine.stream`` for the arguments)."""
        prompt_ids = self._healthy()[0]._encode(prompt)
        route = RouteInfo(program_id or "", len(prompt_ids))
        for _attempt in range(len(self.replicas)):
            index = self.router.select(route)
            started = False
            try:
                async for chunk in self.replicas[index].stream(prompt_ids, program_id=program_id,
                                                                **kwargs):
                    started = True
                    yield chunk
                return
            except EngineNotRunningError:
                logger.warning("Replica %d is down; leaving the pool", index)
                self.router.set_health(index, False)
                if started or not any(self.router.healthy):
                    raise
            finally:
                self.router.done(index)
        raise EngineNotRunningError("No replica could serve the call")

    def _healthy(self) -> list[AutellixEngine]:
        alive = [e for i, e in enumerate(self.replicas) if self.router.healthy[i] and
                 e.is_running]
        if not alive:
            raise EngineNotRunningError("No replica of the pool is running")
        return alive
