"""Per-call records: the policy's state of an active call and the call's statistics.

:class:`CallStats` is the one record of what happened to a call. The scheduler fills it
while the call runs (``CallState.stats``), sends it to the front end with the finished
request (``autellix_engine.policy.wire``), and the same object reaches the process
table, ``CallResult.stats``, the spans and ``/metrics``: adding a statistic is adding a
field here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(slots=True)
class SwapStats:
    """A call's KV swaps (swap preemption mode); filled by the swap planner."""

    swaps_out: int = 0  # preemptions whose KV went to the host pool
    swaps_in: int = 0  # resumptions that restored it without recomputation
    swap_fallbacks: int = 0  # preemptions recomputed because the host pool was full
    swapped_blocks: int = 0  # KV blocks swapped out, summed over its swaps
    swap_s: float = 0.0  # seconds the worker spent copying this call's KV
    retained_reload_tokens: int = 0  # prompt tokens restored from its program's host copy


@dataclass(slots=True)
class CallStats:
    """Scheduler-side facts about one call.

    Units: ``service`` and ``wait`` are in the policy's service unit (tokens or
    seconds, ``PolicyConfig.service_unit``); ``*_s`` fields are wall seconds.
    """

    service: float = 0.0  # attained service of the call
    wait: float = 0.0  # waiting of the call (engine steps for the tokens unit)
    queue_wait_s: float = 0.0  # unscheduled time in the engine (queued, preempted)
    execution_s: float = 0.0  # engine steps that scheduled the call
    prefill_s: float = 0.0  # of which steps that computed its prompt (or recomputed it)
    prefill_tokens: int = 0  # prompt (and recomputed) tokens computed
    decode_tokens: int = 0  # tokens decoded one per step
    preemptions: int = 0  # times the call was evicted from the running batch
    start_level: int = 0  # queue on arrival (0 = highest priority)
    level: int = 0  # queue at completion
    promotions: int = 0  # anti-starvation moves to the top queue
    demotions: int = 0  # quantum expiries
    swap: SwapStats = field(default_factory=SwapStats)
    host_pool_used_blocks: int = 0  # engine-wide: swap pool blocks in use as it ended
    retained_device_blocks: int = 0  # engine-wide: blocks pinned by KV retention
    retained_host_blocks: int = 0  # engine-wide: host pool blocks of retained programs
    #: Prompt tokens served from its program's retained KV (device pins or host copy).
    retained_tokens: int = 0
    #: Prompt tokens its program had computed before (its previous call's context) that
    #: this call computed again: what KV retention is for.
    reprefilled_tokens: int = 0

    @property
    def decode_s(self) -> float:
        """Engine seconds of the steps that decoded one of its tokens."""
        return self.execution_s - self.prefill_s

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CallStats:
        """The inverse of :meth:`to_dict`; unknown keys (a newer peer) are ignored."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known and k != "swap"}
        swap_known = {f.name for f in fields(SwapStats)}
        swap = {k: v for k, v in (data.get("swap") or {}).items() if k in swap_known}
        return cls(**values, swap=SwapStats(**swap))


@dataclass(slots=True)
class CallState:
    """What a policy knows about one active LLM call.

    ``wait``/``service`` count since arrival or the last promotion (the paper's W_c,
    T_c); the call's totals are in ``stats``.
    """

    call_id: str
    program_id: str
    thread_id: str
    arrival: float  # arrival time (vLLM: the request's arrival_time): FCFS within a queue
    seq: int  # arrival order; the final tie-breaker
    start_service: float = 0.0  # program service inherited at arrival (its priority)
    program_wait: float = 0.0  # W_p: program's accumulated wait at arrival
    client_priority: int = 0  # the client's own priority (vLLM's): strict outer key
    remaining_work: float = 0.0  # clairvoyant hint: program's remaining output tokens (srpt)
    #: When the program began (its first call; same clock as ``arrival``). PLAS and
    #: ATLAS serve a queue in program order; None: the call's own arrival.
    program_arrival: float | None = None
    level: int = 0  # current queue (0 = highest priority)
    quantum_left: float = math.inf  # service left before demotion
    wait: float = 0.0  # W_c: wait since arrival or last promotion
    service: float = 0.0  # T_c: service since arrival or last promotion
    stats: CallStats = field(default_factory=CallStats)
