"""Benchmark metrics (pure).

Program token latency (the paper's metric): program response time divided by the
tokens it generated. A program's response time runs from its arrival to its last call's
completion; for a multi-threaded program that is its critical path, and the divisor is
the total tokens over all its threads (paper footnote 2).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass


@dataclass(frozen=True, slots=True)
class ProgramOutcome:
    program_id: str
    suite: str
    arrival_s: float
    completion_s: float
    tokens: int
    calls: int
    queue_wait_s: float  # summed over calls
    execution_s: float  # summed over calls
    preemptions: int
    reprefilled_tokens: int = 0  # history tokens its later calls computed again

    @property
    def response_s(self) -> float:
        return self.completion_s - self.arrival_s

    @property
    def token_latency(self) -> float:
        return self.response_s / max(self.tokens, 1)


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

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(policy: str, rate: float, outcomes: list[ProgramOutcome]) -> Summary:
    lat = [o.token_latency for o in outcomes]
    start = min(o.arrival_s for o in outcomes)
    end = max(o.completion_s for o in outcomes)
    wait = sum(o.queue_wait_s for o in outcomes)
    busy = wait + sum(o.execution_s for o in outcomes)
    return Summary(
        policy=policy, rate=rate, programs=len(outcomes), mean=statistics.mean(lat),
        p50=percentile(lat, 50), p95=percentile(lat, 95), p99=percentile(lat, 99),
        programs_per_s=len(outcomes) / max(end - start, 1e-9),
        wait_share=wait / busy if busy > 0 else 0.0,
        preemptions=sum(o.preemptions for o in outcomes),
        reprefilled_tokens=sum(o.reprefilled_tokens for o in outcomes),
    )


def throughput_at_slo(summaries: list[Summary], policy: str, slo: float) -> float | None:
    """Highest rate whose mean token latency stays within ``slo`` (None: none does)."""
    ok = [s.rate for s in summaries if s.policy == policy and s.mean <= slo]
    return max(ok) if ok else None
