"""Scheduling policies: FCFS, call-level MLFQ, PLAS and ATLAS (pure; no vLLM import).

A policy decides three things about an active call, and nothing else:

1. its queue on arrival (:meth:`Policy.admit`),
2. demotion when its quantum is used (:meth:`Policy.record_service`),
3. anti-starvation promotion while it waits (:meth:`Policy.record_wait`),

plus how a finished call updates its program's attained service
(:meth:`Policy.updated_program_service`). Ordering is ``sort_key``: the client's own
priority first (a strict outer key), then queue, FCFS within a queue, arrival sequence
as the final tie-breaker. The vLLM scheduler glue
(``autellix_engine.extension.scheduler``) and the simulator (``autellix_workloads.sim``)
call the very same objects.

PLAS (paper Alg. 1): a call enters the queue containing its program's attained service
(not Q1, unlike MLFQ), is demoted when its quantum runs out, and is moved to Q1 when
``(W_p + W_c) / (T_p + T_c) >= beta``; only the call counters W_c, T_c are then reset.
ATLAS differs only in the table update: ``max(program, call start + call service)``,
so parallel calls of one program share one priority (the critical path so far).
"""

from __future__ import annotations

import math
from abc import ABC

from autellix_engine.core.calls import CallState
from autellix_engine.core.config import PolicyConfig, PolicyKind, parse_policy


class Policy(ABC):
    """Base policy: one FCFS queue, no demotion, no promotion."""

    kind: PolicyKind
    #: Whether a waiting call of a better queue may evict a running call.
    preemptive: bool = False
    #: Whether using up ``CallState.quantum_left`` moves a call to a lower queue.
    demotes: bool = False

    def __init__(self, config: PolicyConfig | None = None) -> None:
        self.config = config or PolicyConfig()

    # -- queue placement ------------------------------------------------------
    def admit(self, call: CallState) -> None:
        """Place a newly arrived call in its first queue."""
        call.stats.start_level = self.initial_level(call)
        self._enter(call, call.stats.start_level)

    def initial_level(self, call: CallState) -> int:
        """Queue a new call starts in."""
        return 0

    def _enter(self, call: CallState, level: int) -> None:
        call.level = level
        call.quantum_left = self.config.resolved_quanta[level]

    # -- accounting (mutating) --------------------------------------------------
    def record_service(self, call: CallState, amount: float) -> bool:
        """Add ``amount`` of service to a call; return True if its queue changed."""
        call.service += amount
        call.stats.service += amount
        return self._apply_quantum(call, amount)

    def _apply_quantum(self, call: CallState, amount: float) -> bool:
        return False

    def record_wait(self, call: CallState, amount: float) -> bool:
        """Add ``amount`` of waiting to a call; return True if its queue changed."""
        call.wait += amount
        call.stats.wait += amount
        return False

    def wait_until_promotion(self, call: CallState) -> float:
        """Waiting (in service units) after which :meth:`record_wait` would promote
        ``call``, counted from now; ``math.inf`` if it never would. The wait ledger
        (``autellix_engine.core.waits``) schedules promotions with it."""
        return math.inf

    # -- ordering and program update (pure) -------------------------------------
    @staticmethod
    def sort_key(call: CallState) -> tuple[int, int, float, int]:
        """Scheduling order: lower sorts first. The client's own priority is a strict
        outer key (a client that asks for priority 0 beats one that asks for 1 at any
        queue level); the policy's queue level orders calls of equal client priority."""
        return (call.client_priority, call.level, call.arrival, call.seq)

    def engine_priority(self, call: CallState) -> int:
        """The one integer vLLM's priority queue orders by (``request.priority``):
        ``client_priority * num_queues + level``, the first two keys of ``sort_key``."""
        return call.client_priority * self.config.num_queues + call.level

    def updated_program_service(self, program_service: float, call: CallState) -> float:
        """A program's attained service after ``call`` completes (sum of calls)."""
        return program_service + call.stats.service


class FCFSPolicy(Policy):
    """Stock vLLM behaviour: arrival order, never preempts to admit a call."""

    kind = PolicyKind.FCFS


class _MultiLevelPolicy(Policy):
    """Shared demotion and anti-starvation logic of the multi-level policies."""

    preemptive = True
    demotes = True

    def _apply_quantum(self, call: CallState, amount: float) -> bool:
        call.quantum_left -= amount
        last = self.config.num_queues - 1
        changed = False
        while call.quantum_left <= 0 and call.level < last:
            overflow = -call.quantum_left
            self._enter(call, call.level + 1)
            call.quantum_left -= overflow
            call.stats.demotions += 1
            changed = True
        return changed

    def record_wait(self, call: CallState, amount: float) -> bool:
        super().record_wait(call, amount)
        if call.level and self._is_starved(call):
            self._promote(call)
            return True
        return False

    def _is_starved(self, call: CallState) -> bool:
        waited, served = self.starvation_terms(call)
        return waited >= self._starvation_threshold(served)

    def _starvation_threshold(self, served: float) -> float:
        return self.config.beta * max(served, self.config.starvation_floor)

    def wait_until_promotion(self, call: CallState) -> float:
        if not call.level:
            return math.inf
        waited, served = self.starvation_terms(call)
        return max(0.0, self._starvation_threshold(served) - waited)

    def _promote(self, call: CallState) -> None:
        self._enter(call, 0)
        call.wait = 0.0
        call.service = 0.0
        call.stats.promotions += 1

    def starvation_terms(self, call: CallState) -> tuple[float, float]:
        """(waiting, service) compared against beta."""
        return call.wait, call.service


class MLFQPolicy(_MultiLevelPolicy):
    """Call-level MLFQ (FastServe-style): every call starts in Q1, whatever its program."""

    kind = PolicyKind.MLFQ


class PLASPolicy(_MultiLevelPolicy):
    """Program-Level Attained Service: a call starts in its program's queue.

    Within a queue, programs are served first come, first served by *program* arrival
    (then call arrival; ``PolicyConfig.queue_order``): the older program's next call
    goes before a newer program's.
    Ordering by call arrival instead interleaves every program of a level, so many
    programs are in flight at once and their cached contexts evict each other between
    calls; in the simulator (A100 profile, react at 10 programs/s) that recomputed
    ~5x the prompt tokens and doubled mean latency (docs/benchmarks.md).
    """

    kind = PolicyKind.PLAS

    def sort_key(self, call: CallState) -> tuple:  # type: ignore[override]
        program = call.program_arrival
        if program is None or self.config.queue_order == "call":
            program = call.arrival
        return (call.client_priority, call.level, program, call.arrival, call.seq)

    def initial_level(self, call: CallState) -> int:
        return self.config.level_for(call.start_service)

    def starvation_terms(self, call: CallState) -> tuple[float, float]:
        # Program-level ratio (W_p + W_c) / (T_p + T_c): the program terms are kept
        # across promotions so a program's threads tend to be promoted together.
        return call.program_wait + call.wait, call.start_service + call.service


class ATLASPolicy(PLASPolicy):
    """Adaptive Thread-Level Attained Service: critical-path service by ``max``."""

    kind = PolicyKind.ATLAS

    def updated_program_service(self, program_service: float, call: CallState) -> float:
        return max(program_service, call.start_service + call.stats.service)


class SRPTPolicy(Policy):
    """Clairvoyant shortest-remaining-program-work first: the yardstick, not a product.

    The client tells each call how many output tokens its program still has to generate,
    this call's included (``CallState.remaining_work``; the workload generator knows it),
    and the program with the least remaining work runs first, preempting others. No real
    client knows this; the policy measures how far the others are from the best order.
    """

    kind = PolicyKind.SRPT
    preemptive = True
    #: ``engine_priority`` packs the client's priority above the remaining work.
    WORK_SLOTS = 1 << 24

    def sort_key(self, call: CallState) -> tuple:  # type: ignore[override]
        return (call.client_priority, call.remaining_work, call.arrival, call.seq)

    def engine_priority(self, call: CallState) -> int:
        work = min(int(call.remaining_work), self.WORK_SLOTS - 1)
        return call.client_priority * self.WORK_SLOTS + work


_POLICIES: dict[PolicyKind, type[Policy]] = {
    PolicyKind.FCFS: FCFSPolicy,
    PolicyKind.MLFQ: MLFQPolicy,
    PolicyKind.PLAS: PLASPolicy,
    PolicyKind.ATLAS: ATLASPolicy,
    PolicyKind.SRPT: SRPTPolicy,
}


def create_policy(name: str | PolicyKind, config: PolicyConfig | None = None) -> Policy:
    """Build the policy named ``name`` (``fcfs``, ``mlfq``, ``plas``, ``atlas`` or the
    clairvoyant ``srpt``)."""
    return _POLICIES[parse_policy(name)](config)
