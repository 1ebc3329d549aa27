"""Latency against arrival rate in the simulator: the paper's Fig. 12 for any profile.

Each (rate, variant) runs the same seeded programs. A variant is a policy name, or
``vllm``: the paper's plain vLLM baseline, FCFS with prefix caching off. ``fcfs`` is
stock vLLM today (the paper's "vLLM-opt": prefix caching, chunked prefill); the others
are our policies with our engine's swap preemption, and ``srpt`` is the clairvoyant
yardstick. A ``+retain`` suffix (``atlas+retain``) turns KV retention on
(``autellix_workloads.variants``). Reports reuse ``autellix_workloads.bench``'s (JSON, Markdown, plot), so a
simulated sweep reads like a measured one.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable

from autellix_workloads.bench import BenchConfig, BenchResult
from autellix_workloads.generators import generate
from autellix_workloads.metrics import Summary, summarize, throughput_at_slo
from autellix_workloads.sim.des import SimConfig, Simulator
from autellix_workloads.variants import split_variant

#: Variants whose settings differ from the base: (policy, SimConfig changes). Stock
#: vLLM V1 preempts (for memory) by recomputation only.
VARIANTS: dict[str, tuple[str, dict]] = {
    "vllm": ("fcfs", {"prefix_caching": False, "preemption": "recompute"}),
    "fcfs": ("fcfs", {"preemption": "recompute"}),
}


def variant_config(variant: str, base: SimConfig) -> tuple[str, SimConfig]:
    """The policy and simulator settings a variant name stands for."""
    name, retain = split_variant(variant)
    policy, changes = VARIANTS.get(name, (name, {}))
    if retain:
        changes = {**changes, "kv_retention": True}
    return policy, dataclasses.replace(base, **changes)


def run_sweep(cfg: BenchConfig, sim: SimConfig, *,
              log: Callable[[str], None] | None = None) -> BenchResult:
    """Simulate ``cfg.suite`` at each of ``cfg.rates`` under each of ``cfg.policies``
    (variants); ``log`` gets one line per run as it finishes."""
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))  # noqa: T201
    summaries: list[Summary] = []
    outcomes = {}
    for rate in cfg.rates:
        programs = generate(cfg.suite, cfg.num_programs, rate, seed=cfg.seed,
                            token_scale=cfg.token_scale, call_scale=cfg.call_scale,
                            tool_latency_s=cfg.tool_latency_s)
        for variant in cfg.policies:
            policy, variant_sim = variant_config(variant, sim)
            start = time.perf_counter()
            runner = Simulator(programs, policy, variant_sim)
            outs = runner.run()
            took = time.perf_counter() - start
            s = dataclasses.replace(summarize(policy, rate, outs), policy=variant)
            summaries.append(s)
            outcomes[f"{variant}@{rate}"] = outs
            log(f"{cfg.suite} {variant} @ {rate:g}/s: mean {s.mean:.4f} s/token, "
                f"p95 {s.p95:.4f}, {runner.stats.preemptions} preemptions, "
                f"{took:.1f} s to simulate")
    slo = cfg.slo or 2 * min(s.mean for s in summaries)
    tput = {p: throughput_at_slo(summaries, p, slo) for p in cfg.policies}
    return BenchResult(cfg, summaries, outcomes, slo, tput)


def rate_at_latency(summaries: list[Summary], policy: str, slo: float) -> float | None:
    """The arrival rate at which ``policy``'s mean token latency reaches ``slo``,
    interpolated linearly between the measured rates around it (the highest rate if
    it never does; None if even the lowest is over)."""
    pts = sorted((s.rate, s.mean) for s in summaries if s.policy == policy)
    if not pts or pts[0][1] > slo:
        return None
    for (r0, m0), (r1, m1) in zip(pts, pts[1:], strict=False):
        if m1 > slo:
            return r0 + (r1 - r0) * (slo - m0) / (m1 - m0)
    return pts[-1][0]
