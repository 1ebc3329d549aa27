"""``/metrics``: our series and vLLM's own, through ``prometheus_client``.

vLLM's ``vllm:*`` series (the ones its Grafana dashboards read: request latencies,
queue times, KV-cache usage, running/waiting requests, token counters) are kept by each
embedded engine's ``PrometheusStatLogger`` in ``prometheus_client``'s default registry;
the page serves that registry after ours, so the same dashboards work against
``autellix serve``. (Remote replicas serve their own ``vllm:*`` series on their own
``/metrics``.)

Ours (prefix ``autellix_``), read from the front end at scrape time:

- ``programs``, ``active_calls``: the process table;
- ``active_calls_by_level{level}``: active calls by the queue level of their program's
  attained service (the level our scheduler admits them at);
- ``replica_inflight_calls{replica}``, ``replica_healthy{replica}``: per-replica load;
- ``calls_total``, ``completion_tokens_total``, ``prompt_tokens_total``,
  ``cached_prompt_tokens_total``, ``prefix_cache_hit_rate``;
- ``preemptions_total``, ``swaps_out_total``, ``swaps_in_total``,
  ``swap_fallbacks_total``, ``swap_seconds_total``;
- per replica: ``host_pool_used_blocks``, ``retained_device_blocks``,
  ``retained_host_blocks`` (its engine's gauges, as last reported);
- ``retried_calls_total``, ``failed_calls_total``: calls hit by replica faults;
- histograms ``call_latency_seconds`` and ``program_latency_seconds`` (a program's
  latency: its start to its end through the program API);
- ``requests_total``, ``errors_total``, ``aborted_total``: the HTTP layer.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from autellix_engine.frontend.engine import AutellixEngine

#: Seconds; spans one short call on a GPU to a long agentic program on a CPU.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ServerMetrics:
    """The server's registry: the HTTP counters, the latency histograms, and a
    collector that reads the front end on every scrape."""

    def __init__(self, engine: AutellixEngine) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_EngineCollector(engine))
        self.requests = Counter("autellix_requests", "HTTP completion requests.",
                                registry=self.registry)
        self.errors = Counter("autellix_errors", "Completion requests that failed.",
                              registry=self.registry)
        self.aborted = Counter("autellix_aborted", "Calls aborted by a client going away.",
                               registry=self.registry)
        self.call_latency = Histogram(
            "autellix_call_latency_seconds", "Latency of completed calls (submission to end).",
            buckets=LATENCY_BUCKETS, registry=self.registry)
        self.program_latency = Histogram(
            "autellix_program_latency_seconds",
            "Latency of programs ended through the program API (start to end).",
            buckets=LATENCY_BUCKETS, registry=self.registry)

    def page(self) -> bytes:
        """Ours, then vLLM's (and the process's) from the default registry."""
        return generate_latest(self.registry) + generate_latest(REGISTRY)


class _EngineCollector:
    """Series read from the front end when scraped (a ``prometheus_client`` collector)."""

    def __init__(self, engine: AutellixEngine) -> None:
        self.engine = engine

    def describe(self) -> list[Metric]:
        return []  # computed at scrape time: nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        engine = self.engine
        programs = engine.programs()
        yield GaugeMetricFamily("autellix_programs", "Programs in the process table.",
                                value=len(programs))
        yield GaugeMetricFamily("autellix_active_calls", "Calls in flight.",
                                value=sum(len(p.active_threads) for p in programs))
        policy_config = engine.config.policy_config
        by_level = [0] * policy_config.num_queues
        for p in programs:
            by_level[policy_config.level_for(p.service)] += len(p.active_threads)
        yield _labelled("autellix_active_calls_by_level",
                        "Active calls by their program's queue.", "level", by_level)
        replicas = engine.replicas()
        yield _labelled("autellix_replica_inflight_calls", "Calls in flight per replica.",
                        "replica", [r.in_flight for r in replicas])
        yield _labelled("autellix_replica_healthy", "1 while the replica is in the pool.",
                        "replica", [int(r.healthy) for r in replicas])
        for name, help_text in (
            ("host_pool_used_blocks", "Swap pool blocks in use, as last reported."),
            ("retained_device_blocks", "KV blocks pinned for live programs, as last reported."),
            ("retained_host_blocks", "Host pool blocks of live programs' retained KV, as last "
             "reported."),
        ):
            yield _labelled(f"autellix_{name}", help_text, "replica",
                            [getattr(r.gauges, name) for r in replicas])
        totals, counters = engine.totals(), engine.counters()
        for name, help_text, value in (
            ("calls", "Calls completed.", totals.calls),
            ("completion_tokens", "Tokens generated.", totals.completion_tokens),
            ("prompt_tokens", "Prompt tokens of completed calls.", totals.prompt_tokens),
            ("cached_prompt_tokens", "Prompt tokens served from the prefix cache.",
             totals.cached_tokens),
            ("preemptions", "Times calls were preempted.", totals.preemptions),
            ("swaps_out", "Preemptions whose KV was swapped to host memory.",
             totals.swap.swaps_out),
            ("swaps_in", "Resumptions that swapped KV back in.", totals.swap.swaps_in),
            ("swap_fallbacks", "Preemptions recomputed because the host pool was full.",
             totals.swap.swap_fallbacks),
            ("swap_seconds", "Seconds spent copying KV to and from host memory.",
             totals.swap.swap_s),
            ("retained_prompt_tokens", "Prompt tokens served from programs' retained KV "
             "(kv_retention).", totals.retained_tokens),
            ("reprefilled_prompt_tokens", "Prompt tokens of a program's history that its "
             "next call computed again.", totals.reprefilled_tokens),
            ("retried_calls", "Calls re-sent after a replica fault (before their first "
             "token).", counters.retried_calls),
            ("failed_calls", "Calls a replica fault ended after their first token.",
             counters.failed_calls),
        ):
            yield CounterMetricFamily(f"autellix_{name}", help_text, value=value)
        yield GaugeMetricFamily("autellix_prefix_cache_hit_rate",
                                "Cached prompt tokens / prompt tokens, over completed calls.",
                                value=totals.prefix_hit_rate)


def _labelled(name: str, help_text: str, label: str,
              values: list[int] | list[float]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, help_text, labels=[label])
    for i, value in enumerate(values):
        family.add_metric([str(i)], value)
    return family
