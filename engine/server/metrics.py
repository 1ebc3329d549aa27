"""``/metrics`` in Prometheus text format (no client library: a handful of series).

Series (all prefixed ``autellix_``):

- ``programs``, ``active_calls``: the front end's process table;
- ``active_calls_by_level{level}``: active calls by the queue level of their program's
  attained service (the level our scheduler admits them at);
- ``replica_inflight_calls{replica}``, ``replica_healthy{replica}``: per-replica load;
- ``preemptions_total``, ``swaps_out_total``, ``swaps_in_total``,
  ``swap_fallbacks_total``, ``swap_seconds_total``, ``host_pool_used_blocks``;
- ``prompt_tokens_total``, ``cached_prompt_tokens_total``, ``prefix_cache_hit_rate``;
- ``completion_tokens_total``, ``calls_total``;
- ``retried_calls_total``, ``failed_calls_total``: calls hit by replica faults;
- ``call_latency_seconds`` and ``program_latency_seconds`` histograms (a program's
  latency: its start to its end through the program API);
- ``requests_total``, ``errors_total``, ``aborted_total``: the HTTP layer.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from autellix_engine.api import AutellixEngine

#: Seconds; spans one short call on a GPU to a long agentic program on a CPU.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class Histogram:
    """A cumulative-bucket histogram (thread-safe)."""

    def __init__(self, name: str, help_text: str, buckets: Iterable[float] = LATENCY_BUCKETS):
        self.name, self.help = name, help_text
        self.buckets = tuple(sorted(buckets))
        self.counts = [0] * (len(self.buckets) + 1)  # last: +Inf
        self.sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        with self._lock:
            self.counts[bisect.bisect_left(self.buckets, value)] += 1
            self.sum += value

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        with self._lock:
            running = 0
            for bound, count in zip(self.buckets, self.counts, strict=False):
                running += count
                lines.append(f'{self.name}_bucket{{le="{bound:g}"}} {running}')
            running += self.counts[-1]
            lines += [f'{self.name}_bucket{{le="+Inf"}} {running}',
                      f"{self.name}_sum {self.sum:.6f}", f"{self.name}_count {running}"]
        return lines


def _gauge(name: str, value: float, help_text: str) -> list[str]:
    lines = [f"# HELP autellix_{name} {help_text}", f"# TYPE autellix_{name} gauge"]
    return lines + [f"autellix_{name} {value:g}"]


def render(engine: AutellixEngine, counters: dict[str, int],
           histograms: list[Histogram]) -> str:
    """The whole ``/metrics`` page of a front end (over all its replicas)."""
    programs = engine.programs()
    policy_config = engine.config.policy_config
    lines: list[str] = []
    lines += _gauge("programs", len(programs), "Programs in the process table.")
    lines += _gauge("active_calls", sum(len(p.active_threads) for p in programs),
                    "Calls in flight.")
    by_level = [0] * policy_config.num_queues
    for p in programs:
        by_level[policy_config.level_for(p.service)] += len(p.active_threads)
    lines += ["# HELP autellix_active_calls_by_level Active calls by their program's queue.",
              "# TYPE autellix_active_calls_by_level gauge"]
    lines += [f'autellix_active_calls_by_level{{level="{i}"}} {n}'
              for i, n in enumerate(by_level)]

    router = engine.router
    inflight = router.in_flight
    healthy = [ok and r.is_running for ok, r in zip(router.healthy, engine.replicas, strict=True)]
    lines += ["# HELP autellix_replica_inflight_calls Calls in flight per replica.",
              "# TYPE autellix_replica_inflight_calls gauge"]
    lines += [f'autellix_replica_inflight_calls{{replica="{i}"}} {n}'
              for i, n in enumerate(inflight)]
    lines += ["# HELP autellix_replica_healthy 1 while the replica is in the pool.",
              "# TYPE autellix_replica_healthy gauge"]
    lines += [f'autellix_replica_healthy{{replica="{i}"}} {int(ok)}'
              for i, ok in enumerate(healthy)]

    totals = engine.totals
    values = {"calls": totals.calls, "completion_tokens": totals.completion_tokens,
              "prompt_tokens": totals.prompt_tokens, "cached_prompt_tokens": totals.cached_tokens,
              "preemptions": totals.preemptions, "swaps_out": totals.swap.swaps_out,
              "swaps_in": totals.swap.swaps_in, "swap_fallbacks": totals.swap.swap_fallbacks,
              "swap_seconds": totals.swap.swap_s, "retried_calls": totals.retried_calls,
              "failed_calls": totals.failed_calls}
    for key, help_text in (
        ("calls", "Calls completed."), ("completion_tokens", "Tokens generated."),
        ("prompt_tokens", "Prompt tokens of completed calls."),
        ("cached_prompt_tokens", "Prompt tokens served from the prefix cache."),
        ("preemptions", "Times calls were preempted."),
        ("swaps_out", "Preemptions whose KV was swapped to host memory."),
        ("swaps_in", "Resumptions that swapped KV back in."),
        ("swap_fallbacks", "Preemptions recomputed because the host pool was full."),
        ("swap_seconds", "Seconds spent copying KV to and from host memory."),
        ("retried_calls", "Calls re-sent after a replica fault (before their first token)."),
        ("failed_calls", "Calls a replica fault ended after their first token."),
    ):
        name = f"autellix_{key}_total"
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter",
                  f"{name} {values[key]:g}"]
    prompt = totals.prompt_tokens
    hit_rate = totals.cached_tokens / prompt if prompt else 0.0
    lines += _gauge("prefix_cache_hit_rate", hit_rate,
                    "Cached prompt tokens / prompt tokens, over completed calls.")
    lines += _gauge("host_pool_used_blocks", totals.host_pool_used_blocks,
                    "Swap pool blocks in use, as last reported.")
    for name, value in counters.items():
        lines += [f"# TYPE autellix_{name}_total counter", f"autellix_{name}_total {value}"]
    for histogram in histograms:
        lines += histogram.render()
    return "\n".join(lines) + "\n"
