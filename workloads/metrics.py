"""Benchmark metrics (pure).

Program token latency (the paper's metric): program response time divided by the
tokens it generated. A program's response time runs from its arrival to its last call's
completion, less its user's think time between chat turns (the user's time, not the
system's); for a program with parallel calls it is its critical path, and the divisor
is the total tokens over all its calls (paper footnote 2).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass

from autellix_engine.core.stats import SwapStats, Tally


@dataclass(frozen=True, slots=True)
class ProgramOutcome:
    """One program of a run: when it arrived and finished, and its calls' tally."""

    program_id: str
    suite: str
    arrival_s: float
    completion_s: float
    tally: Tally  # over its calls (the process table's, at the program's end)
    idle_s: float = 0.0  # think time between its turns

    @property
    def response_s(self) -> float:
        return self.completion_s - self.arrival_s - self.idle_s

    @property
    def token_latency(self) -> float:
        return self.response_s / max(self.tally.completion_tokens, 1)

    @classmethod
    def from_dict(cls, data: dict) -> ProgramOutcome:
        """From a report's JSON (``asdict`` of an outcome)."""
        fields = dict(data["tally"])
        tally = Tally(**{k: v for k, v in fields.items() if k != "swap"},
                      swap=SwapStats(**fields.get("swap", {})))
        return cls(data["program_id"], data["suite"], data["arrival_s"], data["completion_s"],
                   tally, data.get("idle_s", 0.0))


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile, ``q`` in [0, 100]."""
    if not values:
        return math.nan
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass(frozen=True, slots=True)
class Summary:
    policy: str
    rate: float
    programs: int
    mean: float  # program token latency, s/token
    p50: float
    p95: float
    p99: float
    programs_per_s: float
    wait_share: float  # queue wait / (queue wait + execution), over all calls
    preemptions: int
    reprefilled_tokens: int = 0  # programs' history tokens computed again
    #: Prompt tokens computed (not found in the prefix cache): comparable across
    #: program scopes, unlike re-prefilled tokens (a program's own history only).
    prefilled_tokens: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(policy: str, rate: float, outcomes: list[ProgramOutcome]) -> Summary:
    lat = [o.token_latency for o in outcomes]
    start = min(o.arrival_s for o in outcomes)
    end = max(o.completion_s for o in outcomes)
    total = Tally()
    for o in outcomes:
        total.merge(o.tally)
    busy = total.queue_wait_s + total.execution_s
    return Summary(
        policy=policy, rate=rate, programs=len(outcomes), mean=statistics.mean(lat),
        p50=percentile(lat, 50), p95=percentile(lat, 95), p99=percentile(lat, 99),
        programs_per_s=len(outcomes) / max(end - start, 1e-9),
        wait_share=total.queue_wait_s / busy if busy > 0 else 0.0,
        preemptions=total.preemptions, reprefilled_tokens=total.reprefilled_tokens,
        prefilled_tokens=total.prompt_tokens - total.cached_tokens,
    )


def throughput_at_slo(summaries: list[Summary], policy: str, slo: float) -> float | None:
    """Highest rate whose mean token latency stays within ``slo`` (None: none does)."""
    ok = [s.rate for s in summaries if s.policy == policy and s.mean <= slo]
    return max(ok) if ok else None
