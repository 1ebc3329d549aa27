"""Latency against arrival rate in the simulator: the paper's Fig. 12 for any profile.

Each (rate, variant) runs the same seeded programs. A variant is a policy name, or
``vllm``: the paper's plain vLLM baseline, FCFS with prefix caching off. ``fcfs`` is
stock vLLM with prefix caching and chunked prefill (the paper's "vLLM-opt"); the others
are our policies with our engine's swap preemption, and ``srpt`` is the clairvoyant
yardstick. A ``+retain`` suffix (``atlas+retain``) turns KV retention on
(``autellix_workloads.variants``). Reports reuse ``autellix_workloads.bench``'s (JSON,
Markdown, plot), so a simulated sweep reads like a measured one.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable

from autellix_workloads.bench import BenchConfig, BenchResult, programs_for, result_of
from autellix_workloads.metrics import Summary, summarize
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
    name, retain, scope = split_variant(variant)
    policy, changes = VARIANTS.get(name, (name, {}))
    changes = {**changes, "program_scope": scope}
    if retain:
        changes = {**changes, "kv_retention": True}
    return policy, dataclasses.replace(base, **changes)


def run_sweep(cfg: BenchConfig, sim: SimConfig, *,
              log: Callable[[str], None] | None = None, progress: bool = False) -> BenchResult:
    """Simulate ``cfg.suite`` at each of ``cfg.rates`` under each of ``cfg.policies``
    (variants); ``log`` gets one line per run as it finishes; ``progress`` shows a bar
    of finished programs for each run (on stderr)."""
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))  # noqa: T201
    outcomes = {}
    for rate in cfg.rates:
        programs = programs_for(cfg, rate)
        for variant in cfg.policies:
            policy, variant_sim = variant_config(variant, sim)
            start = time.perf_counter()
            runner = Simulator(programs, policy, variant_sim)
            outs = _run(runner, len(programs), f"{variant} @ {rate:g}/s", progress)
            took = time.perf_counter() - start
            outcomes[f"{variant}@{rate}"] = outs
            s = summarize(variant, rate, outs)
            log(f"{cfg.suite} {variant} @ {rate:g}/s: mean {s.mean:.4f} s/token, "
                f"p95 {s.p95:.4f}, {runner.stats.preemptions} preemptions, "
                f"{took:.1f} s to simulate")
    return result_of(cfg, outcomes)


def _run(runner: Simulator, total: int, label: str, progress: bool) -> list:
    if not progress:
        return runner.run()
    from tqdm import tqdm

    with tqdm(total=total, desc=label, unit="prog", leave=False, file=sys.stderr) as bar:
        return runner.run(on_program_done=lambda: bar.update(1))


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
