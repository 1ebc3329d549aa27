"""Replica selection (pure): round-robin, least-used, and the paper's data-locality
balancer (Algorithm 2).

Locality (Autellix Alg. 2): a call of at most ``threshold`` prompt tokens (default 2048)
goes to the least-used replica, since short prompts hit the shared system-prompt prefix
cache on any replica (>= 75% in the paper's Fig. 7); a longer call goes to its program's
pinned replica, pinned to the least-used one on first need, because within a program
prefix-cache hit rates stay above 90% at any length. "Least used" is the fewest calls in
flight (the paper's definition). Unhealthy replicas are skipped; a pin on one that left
is re-pinned.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Collection
from dataclasses import dataclass
from enum import Enum

#: The paper's small-request threshold, in prompt tokens.
LOCALITY_THRESHOLD = 2048


class NoHealthyReplicaError(RuntimeError):
    """Every replica is out of the pool."""


class RoutingKind(str, Enum):
    ROUND_ROBIN = "round_robin"
    LEAST_USED = "least_used"
    LOCALITY = "locality"


@dataclass(frozen=True, slots=True)
class RouteInfo:
    """What a router may look at for one call."""

    program_id: str
    prompt_tokens: int


class Router:
    """Chooses a replica index for a call and tracks in-flight calls per replica."""

    def __init__(self, num_replicas: int) -> None:
        if num_replicas < 1:
            raise ValueError("num_replicas must be >= 1")
        self.in_flight = [0] * num_replicas
        self.healthy = [True] * num_replicas
        self._lock = threading.Lock()

    def select(self, info: RouteInfo, avoid: Collection[int] = ()) -> int:
        """Pick a healthy replica and count the call as in flight on it.

        ``avoid``: replicas that just failed this call; skipped while another healthy
        replica is left.

        Raises:
            NoHealthyReplicaError: every replica is out of the pool.
        """
        with self._lock:
            if not any(self.healthy):
                raise NoHealthyReplicaError("No replica is in the pool (all failed their "
                                            "health checks)")
            allowed = [ok and i not in avoid for i, ok in enumerate(self.healthy)]
            index = self._choose(info, allowed if any(allowed) else list(self.healthy))
            self.in_flight[index] += 1
            return index

    def done(self, index: int) -> None:
        """A call on replica ``index`` finished (or failed)."""
        with self._lock:
            self.in_flight[index] = max(0, self.in_flight[index] - 1)

    def set_health(self, index: int, healthy: bool) -> None:
        with self._lock:
            self.healthy[index] = healthy
            self._on_health_change(index, healthy)

    def forget(self, program_id: str) -> None:
        """A program ended: drop what the router keeps about it."""

    def _choose(self, info: RouteInfo, allowed: list[bool]) -> int:
        """A replica among those ``allowed`` (at least one is)."""
        raise NotImplementedError

    def _on_health_change(self, index: int, healthy: bool) -> None:
        pass

    def _least_used(self, allowed: list[bool]) -> int:
        candidates = [i for i, ok in enumerate(allowed) if ok]
        return min(candidates, key=lambda i: (self.in_flight[i], i))


class RoundRobinRouter(Router):
    def __init__(self, num_replicas: int) -> None:
        super().__init__(num_replicas)
        self._cycle = itertools.cycle(range(num_replicas))

    def _choose(self, info: RouteInfo, allowed: list[bool]) -> int:
        while True:
            i = next(self._cycle)
            if allowed[i]:
                return i


class LeastUsedRouter(Router):
    def _choose(self, info: RouteInfo, allowed: list[bool]) -> int:
        return self._least_used(allowed)


class LocalityRouter(Router):
    """Algorithm 2: short calls to the least-used replica, long ones to the program's pin."""

    def __init__(self, num_replicas: int, threshold: int = LOCALITY_THRESHOLD) -> None:
        super().__init__(num_replicas)
        self.threshold = threshold
        self.pins: dict[str, int] = {}

    def _choose(self, info: RouteInfo, allowed: list[bool]) -> int:
        if info.prompt_tokens <= self.threshold:
            return self._least_used(allowed)
        pinned = self.pins.get(info.program_id)
        if pinned is None or not allowed[pinned]:
            pinned = self.pins[info.program_id] = self._least_used(allowed)
        return pinned

    def _on_health_change(self, index: int, healthy: bool) -> None:
        if not healthy:  # re-pinned on their next long call
            self.pins = {p: r for p, r in self.pins.items() if r != index}

    def forget(self, program_id: str) -> None:
        """Drop a finished program's pin."""
        with self._lock:
            self.pins.pop(program_id, None)


def create_router(kind: str | RoutingKind, num_replicas: int,
                  threshold: int | None = None) -> Router:
    """A router by name: ``round_robin``, ``least_used`` or ``locality`` (with its
    ``threshold``, default :data:`LOCALITY_THRESHOLD`)."""
    try:
        kind = RoutingKind(kind)
    except ValueError:
        valid = ", ".join(k.value for k in RoutingKind)
        raise ValueError(f"Unknown routing {kind!r} (valid: {valid})") from None
    if kind is RoutingKind.LOCALITY:
        return LocalityRouter(num_replicas, threshold or LOCALITY_THRESHOLD)
    return {RoutingKind.ROUND_ROBIN: RoundRobinRouter,
            RoutingKind.LEAST_USED: LeastUsedRouter}[kind](num_replicas)
