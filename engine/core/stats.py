"""Records of facts: what happened to a call, sums over calls, an engine's state.

* :class:`CallStats` is the one record of what happened to one call. The scheduler
  fills it while the call runs (``CallState.stats``), sends it to the front end with
  the finished request (``autellix_engine.core.wire``), and the same object reaches the
  process table, ``CallResult.stats``, the spans and ``/metrics``: adding a statistic
  is adding a field here.
* :class:`Tally` adds finished calls up. It is embedded, not copied, wherever calls
  are summed: a program's process-table entry and snapshot, the front end's totals,
  a workload's program outcome.
* :class:`EngineGauges` is one engine's (replica's) state, as last reported: never a
  call's fact, so never in ``CallStats``.
"""

from __future__ import annotations

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


def _add_fields(target: Any, source: Any) -> None:
    """``target += source``, field by field (numbers, and nested records)."""
    for f in fields(source):
        value = getattr(source, f.name)
        if isinstance(value, int | float):
            setattr(target, f.name, getattr(target, f.name) + value)
        else:
            _add_fields(getattr(target, f.name), value)


@dataclass(slots=True)
class Tally:
    """Totals over finished calls (additive: ``add`` one call, ``merge`` another tally)."""

    calls: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens served from the prefix cache
    completion_tokens: int = 0
    preemptions: int = 0
    queue_wait_s: float = 0.0  # summed over calls
    execution_s: float = 0.0  # summed over calls (parallel calls add up)
    retained_tokens: int = 0  # prompt tokens served from programs' retained KV
    reprefilled_tokens: int = 0  # programs' history tokens computed again
    swap: SwapStats = field(default_factory=SwapStats)

    def add(self, stats: CallStats, prompt_tokens: int, cached_tokens: int,
            completion_tokens: int) -> None:
        """Count one finished call: its scheduler record and its token usage."""
        self.calls += 1
        self.prompt_tokens += prompt_tokens
        self.cached_tokens += cached_tokens
        self.completion_tokens += completion_tokens
        self.preemptions += stats.preemptions
        self.queue_wait_s += stats.queue_wait_s
        self.execution_s += stats.execution_s
        self.retained_tokens += stats.retained_tokens
        self.reprefilled_tokens += stats.reprefilled_tokens
        _add_fields(self.swap, stats.swap)

    def merge(self, other: Tally) -> None:
        _add_fields(self, other)

    def copy(self) -> Tally:
        out = Tally()
        out.merge(self)
        return out

    @property
    def prefix_hit_rate(self) -> float:
        """Prompt tokens served from the prefix cache / prompt tokens."""
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0


@dataclass(slots=True)
class EngineGauges:
    """One engine's state as last reported: vLLM's step statistics (running, waiting,
    KV usage) and ours (swap pool and retention), from the engine's latest step or the
    latest call it finished."""

    running: int = 0  # calls in the running batch
    waiting: int = 0  # calls waiting to be scheduled
    kv_cache_usage: float = 0.0  # fraction of KV blocks held by calls (not cached ones)
    host_pool_used_blocks: int = 0  # swap pool blocks in use
    retained_device_blocks: int = 0  # KV blocks pinned for live programs (retention)
    retained_host_blocks: int = 0  # host pool blocks of live programs' retained KV

    def update(self, data: dict[str, Any]) -> None:
        """Set the fields ``data`` names (a peer's report; unknown keys ignored)."""
        for f in fields(self):
            if isinstance(data.get(f.name), int | float):
                setattr(self, f.name, data[f.name])
