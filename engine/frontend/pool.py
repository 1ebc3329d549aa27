"""The replica pool: the back ends that run calls, their health, routing and retries.

One engine is a pool of one. :class:`ReplicaPool` owns the replicas
(``autellix_engine.frontend.backends``), the router (``autellix_engine.core.routing``;
default: the paper's locality balancer) and the end notices for replicas' KV retention.
It knows nothing of programs beyond the tags calls carry: the program API is
``AutellixEngine``'s.

Faults: a replica leaves the pool when its health check fails (checked every
``health_interval_s``, and at once after a call fails on it), is restarted when it
can be (an embedded engine), and rejoins when its check passes. A call that a replica
fails (a 5xx, a reset or timed-out connection, a dead engine) is retried on another
replica with backoff while it has returned no token; after its first token it fails
with ``ReplicaError`` (``failed_calls``). A call the request is at fault for (an HTTP
4xx) fails with ``InvalidRequestError`` at once and the replica stays in the pool.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from autellix_engine.core.errors import EngineNotRunningError, ReplicaError
from autellix_engine.core.notices import EndNotices
from autellix_engine.core.routing import NoHealthyReplicaError, RouteInfo, create_router
from autellix_engine.core.stats import EngineGauges
from autellix_engine.frontend.backends.base import Backend, BackendCall, Delta, Finish
from autellix_engine.frontend.config import EngineConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReplicaState:
    """One replica as the pool sees it (``AutellixEngine.replicas()``)."""

    index: int
    name: str  # "embedded", or a remote replica's URL
    healthy: bool  # in the pool and, as last seen, able to run calls
    in_flight: int  # calls routed to it and not finished
    gauges: EngineGauges  # its engine's state as last reported (a copy)


@dataclass(slots=True)
class PoolCounters:
    """Replica faults, over the pool's life."""

    retried_calls: int = 0  # calls re-sent to a replica after a fault (no token yet)
    failed_calls: int = 0  # calls a replica fault ended after their first token
    rejoins: int = 0  # replicas brought back into the pool


class ReplicaPool:
    """The replicas behind one front end."""

    def __init__(self, config: EngineConfig, replicas: Sequence[Backend]) -> None:
        self.config = config
        self._replicas = list(replicas)
        self._router = create_router(config.routing, len(self._replicas),
                                     config.locality_threshold)
        self._notices = EndNotices(len(self._replicas))
        self.counters = PoolCounters()
        self._checking: set[int] = set()  # replicas with a health check under way
        self._checks: set[asyncio.Task] = set()  # health checks started by failed calls
        self._monitor_task: asyncio.Task | None = None
        self._down_since: float | None = None  # since when no replica is in the pool
        self._closed = False

    # -- lifecycle --------------------------------------------------------------------
    async def start(self) -> None:
        """Start every replica (one at a time: clearer errors, and 2 cores suffice),
        then the health monitor."""
        try:
            for replica in self._replicas:
                await replica.start()
        except BaseException:
            await self.aclose()
            raise
        self._monitor_task = asyncio.create_task(self._monitor())

    async def aclose(self) -> None:
        """Stop the monitor and every replica; calls in flight fail."""
        self._closed = True
        if self._monitor_task is not None:
            self._monitor_task.cancel()
        for replica in self._replicas:
            await replica.aclose()

    @property
    def tokenizer(self) -> Any:
        return self._replicas[0].tokenizer

    @property
    def max_model_len(self) -> int | None:
        """The smallest context length among the replicas (None: unknown)."""
        lengths = [r.max_model_len for r in self._replicas if r.max_model_len]
        return min(lengths) if lengths else None

    @property
    def is_running(self) -> bool:
        """Some replica is in the pool and, as last seen, able to run calls."""
        return any(ok and r.is_running
                   for ok, r in zip(self._router.healthy, self._replicas, strict=True))

    @property
    def is_alive(self) -> bool:
        """The monitor runs and some replica ran calls within ``dead_after_s``."""
        if self._monitor_task is None or self._monitor_task.done():
            return False
        down = self._down_since
        return down is None or time.monotonic() - down < self.config.dead_after_s

    def states(self) -> list[ReplicaState]:
        return [ReplicaState(i, r.name, ok and r.is_running, n,
                             dataclasses.replace(r.gauges))
                for i, (r, ok, n) in enumerate(zip(self._replicas, self._router.healthy,
                                                   self._router.in_flight, strict=True))]

    def replica(self, index: int) -> Backend:
        """A replica's back end (for what the pool does not cover, e.g. vLLM's own
        objects of an embedded engine)."""
        return self._replicas[index]

    # -- programs -----------------------------------------------------------------------
    def program_ended(self, program_id: str) -> None:
        """Forget a program's pin and tell every replica (with its next call), so
        retained KV is freed."""
        self._router.forget(program_id)
        self._notices.ended(program_id)

    # -- health -----------------------------------------------------------------------
    async def _monitor(self) -> None:
        while True:
            await asyncio.sleep(self.config.health_interval_s)
            await asyncio.gather(*(self._check(i) for i in range(len(self._replicas))))

    async def _check(self, index: int) -> None:
        """Probe one replica; one that fails leaves the pool at once and, when it can
        be (an embedded engine), is restarted, rejoining when it answers again."""
        if index in self._checking:
            return
        self._checking.add(index)
        replica = self._replicas[index]
        try:
            healthy = await replica.check_health()
            # Only a dead replica is restarted: a slow one (a missed probe, not yet
            # silent for the stall timeout) rejoins when it answers again.
            if not healthy and self.config.revive_replicas and not replica.is_running:
                self._set_health(index, False)
                healthy = await replica.revive()
        except Exception:  # noqa: BLE001 - the monitor must survive anything
            logger.exception("Health check of replica %d (%s) failed", index, replica.name)
            healthy = False
        finally:
            self._checking.discard(index)
        self._set_health(index, healthy)

    def _set_health(self, index: int, healthy: bool) -> None:
        if healthy == self._router.healthy[index]:
            return
        self._router.set_health(index, healthy)
        self.counters.rejoins += healthy
        logger.warning("Replica %d (%s) %s the pool", index, self._replicas[index].name,
                       "rejoined" if healthy else "left")
        if any(self._router.healthy):
            self._down_since = None
        else:
            self._down_since = self._down_since or time.monotonic()

    def _check_soon(self, index: int) -> None:
        check = asyncio.get_running_loop().create_task(self._check(index))
        self._checks.add(check)  # held: the loop keeps only weak references
        check.add_done_callback(self._checks.discard)

    # -- calls ------------------------------------------------------------------------
    async def run(self, call: BackendCall) -> AsyncIterator[tuple[int, Delta | Finish]]:
        """Route a call and yield ``(replica index, event)``; retry it elsewhere on
        replica faults while it has returned no token."""
        route = RouteInfo(call.tag.program_id, len(call.prompt_ids))
        call_id = call.request_id
        failed: set[int] = set()
        error: ReplicaError | None = None
        produced = False
        for attempt in range(self.config.call_attempts):
            if attempt:
                self.counters.retried_calls += 1
                await asyncio.sleep(self.config.retry_backoff_s * 2 ** (attempt - 1))
                # A fresh request id: the failed one may linger in its replica.
                call = dataclasses.replace(call, request_id=f"{call_id}:{attempt}")
            try:
                index = self._router.select(route, avoid=failed)
            except NoHealthyReplicaError as e:
                error = ReplicaError(str(e))
                continue
            try:
                async for event in self._replicas[index].run(self._with_notices(call, index)):
                    produced |= isinstance(event, Delta) and bool(event.token_ids or event.text)
                    yield index, event
                return
            except ReplicaError as e:
                logger.warning("Replica %d (%s) failed call %s: %s", index,
                               self._replicas[index].name, call.request_id, e)
                self._check_soon(index)
                if self._closed:
                    raise EngineNotRunningError("The engine shut down during the call") from e
                if produced:
                    self.counters.failed_calls += 1
                    raise
                failed.add(index)
                error = e
            finally:
                self._router.done(index)
        assert error is not None
        raise error

    def _with_notices(self, call: BackendCall, replica: int) -> BackendCall:
        """The call, carrying the end notices pending for its replica."""
        ended = self._notices.take(replica)
        if not ended:
            return call
        tag = dataclasses.replace(call.tag, ended_programs=call.tag.ended_programs + ended)
        return dataclasses.replace(call, tag=tag)
