"""``autellix bench``: run a workload suite at one or more rates under each policy on the
real embedded engine, side by side, and report latency, throughput and scheduling facts.

Each policy gets its own engine (the policy is fixed per engine); every rate replays the
same seeded programs on it, arriving as a Poisson process.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from autellix_workloads.generators import generate
from autellix_workloads.metrics import ProgramOutcome, Summary, summarize, throughput_at_slo
from autellix_workloads.spec import ProgramSpec
from autellix_workloads.variants import split_variant


@dataclass
class BenchConfig:
    """What to run. Defaults fit ``make run`` on a 2-core CPU in under 10 minutes."""

    suite: str = "mixed"
    rates: list[float] = field(default_factory=lambda: [0.5])
    policies: list[str] = field(default_factory=lambda: ["fcfs", "atlas", "srpt"])
    num_programs: int = 24
    seed: int = 0
    token_scale: float = 0.25  # shrink all token lengths (CPU)
    call_scale: float = 0.25  # shrink calls per program (CPU)
    tool_latency_s: float = 0.05
    model: str = "smollm2"
    max_num_seqs: int = 8
    max_model_len: int = 4096
    slo: float | None = None  # s/token for "throughput at equal latency"; None: 2x best
    swap_space_bytes: int | None = None  # host swap pool (None: the engine's default)
    vllm_kwargs: dict = field(default_factory=dict)  # further vLLM engine arguments


@dataclass
class BenchResult:
    config: BenchConfig
    summaries: list[Summary]
    outcomes: dict[str, list[ProgramOutcome]]  # "policy@rate" -> outcomes
    slo: float
    throughput_at_slo: dict[str, float | None]

    def to_json(self) -> dict:
        return {
            "config": asdict(self.config),
            "summaries": [s.to_dict() for s in self.summaries],
            "slo": self.slo,
            "throughput_at_slo": self.throughput_at_slo,
            "outcomes": {k: [asdict(o) | {"token_latency": o.token_latency} for o in v]
                         for k, v in self.outcomes.items()},
        }


async def _run_program(graph, spec: ProgramSpec, t0: float, eng) -> ProgramOutcome:
    from autellix_workloads.graph import initial_state, run_config

    await asyncio.sleep(max(0.0, t0 + spec.arrival_s - time.monotonic()))
    arrival = time.monotonic() - t0
    final = await graph.ainvoke(initial_state(spec), config=run_config(spec))
    completion = time.monotonic() - t0
    snap = eng.table.ended_snapshot(spec.program_id)
    return ProgramOutcome(
        spec.program_id, spec.suite, arrival, completion, final["tokens"], spec.num_calls,
        snap.queue_wait_s if snap else 0.0, snap.execution_s if snap else 0.0,
        snap.preemptions if snap else 0, snap.reprefilled_tokens if snap else 0,
    )


async def run_rate(graph, eng, programs: list[ProgramSpec], label: str) -> list[ProgramOutcome]:
    """Replay ``programs`` at their arrival times; a progress bar counts completions."""
    t0 = time.monotonic()
    bar = tqdm(total=len(programs), desc=label, unit="prog", leave=True)

    async def one(spec):
        out = await _run_program(graph, spec, t0, eng)
        bar.update(1)
        return out

    try:
        return list(await asyncio.gather(*(one(s) for s in programs)))
    finally:
        bar.close()


async def run_bench(cfg: BenchConfig) -> BenchResult:
    from autellix_engine import AutellixEngine, EngineConfig
    from autellix_lg import AutellixChatModel
    from autellix_workloads.graph import build_graph

    summaries, outcomes = [], {}
    for variant in cfg.policies:
        policy, retain = split_variant(variant)
        engine_cfg = EngineConfig(
            model=cfg.model, policy=policy, kv_retention=retain,
            swap_space_bytes=cfg.swap_space_bytes,
            vllm_kwargs={"max_num_seqs": cfg.max_num_seqs, "max_model_len": cfg.max_model_len,
                         **cfg.vllm_kwargs})
        async with AutellixEngine(engine_cfg) as eng:
            graph = build_graph(AutellixChatModel(engine=eng, model=cfg.model, policy=policy,
                                                  temperature=0.0))
            for rate in cfg.rates:
                programs = generate(cfg.suite, cfg.num_programs, rate, seed=cfg.seed,
                                    token_scale=cfg.token_scale, call_scale=cfg.call_scale,
                                    tool_latency_s=cfg.tool_latency_s)
                outs = await run_rate(graph, eng, programs, f"{variant} @ {rate}/s")
                outcomes[f"{variant}@{rate}"] = outs
                summaries.append(summarize(variant, rate, outs))
    slo = cfg.slo or 2 * min(s.mean for s in summaries)
    tput = {p: throughput_at_slo(summaries, p, slo) for p in cfg.policies}
    return BenchResult(cfg, summaries, outcomes, slo, tput)


#: The least gain of srpt over fcfs (a share of fcfs's mean) that "gain captured" is
#: reported for: single runs of 24 programs vary by about 10% (docs/benchmarks.md).
MIN_GAIN = 0.10


def against_oracle(summaries: list[Summary]) -> dict[tuple[str, float], tuple[float, float]]:
    """Per (policy, rate): its mean over the clairvoyant ``srpt`` mean at that rate, and
    the share of srpt's gain over ``fcfs`` it captures (1 = all of it). Only where srpt
    (and, for the share, fcfs) ran at that rate; the share is NaN where srpt gains less
    than :data:`MIN_GAIN` over fcfs (no contention to speak of: the share is noise)."""
    by = {(s.policy, s.rate): s.mean for s in summaries}
    out = {}
    for (policy, rate), mean in by.items():
        oracle, fcfs = by.get(("srpt", rate)), by.get(("fcfs", rate))
        if not oracle:
            continue
        if fcfs is not None and fcfs - oracle > MIN_GAIN * fcfs:
            share = (fcfs - mean) / (fcfs - oracle)
        else:
            share = float("nan")
        out[(policy, rate)] = (mean / oracle, share)
    return out


def markdown_table(result: BenchResult) -> str:
    oracle = against_oracle(result.summaries)
    rows = ["| policy | rate /s | programs | mean s/tok | p50 | p95 | p99 | programs/s | "
            "wait share | preemptions | re-prefilled tokens | vs srpt | gain captured |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in result.summaries:
        ratio, share = oracle.get((s.policy, s.rate), (float("nan"), float("nan")))
        rows.append(f"| {s.policy} | {s.rate:g} | {s.programs} | {s.mean:.4f} | {s.p50:.4f} | "
                    f"{s.p95:.4f} | {s.p99:.4f} | {s.programs_per_s:.3f} | "
                    f"{s.wait_share:.0%} | {s.preemptions} | {s.reprefilled_tokens} | "
                    f"{_num(ratio, 'x')} | "
                    f"{_num(share, '%')} |")
    rows.append("")
    rows.append(f"Throughput at equal latency (highest rate with mean <= {result.slo:.4f} "
                "s/token): " + ", ".join(f"{p}: {r if r is not None else 'none'}"
                                        for p, r in result.throughput_at_slo.items()))
    return "\n".join(rows)


def _num(value: float, unit: str) -> str:
    if value != value:  # NaN: not measured
        return "-"
    return f"{value:.0%}" if unit == "%" else f"{value:.2f}{unit}"


def plot(result: BenchResult, path: Path) -> None:
    """Latency against rate per policy (the paper's Fig. 12); with a single rate,
    grouped bars of mean/p50/p95/p99 per policy instead."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policies = result.config.policies
    if len({s.rate for s in result.summaries}) == 1:
        fig, ax = plt.subplots(figsize=(7, 4))
        metrics = ("mean", "p50", "p95", "p99")
        width = 0.8 / len(policies)
        for i, policy in enumerate(policies):
            s = next(x for x in result.summaries if x.policy == policy)
            xs = [m + i * width for m in range(len(metrics))]
            ax.bar(xs, [getattr(s, m) for m in metrics], width, label=policy)
        ax.set_xticks([m + width * (len(policies) - 1) / 2 for m in range(len(metrics))],
                      metrics)
        ax.set_ylabel("program token latency (s/token)")
        ax.set_title(f"{result.config.suite} at {result.summaries[0].rate:g} programs/s")
        ax.grid(alpha=0.3, axis="y")
        ax.legend()
    else:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, metric, title in ((axes[0], "mean", "mean"), (axes[1], "p95", "P95")):
            for policy in policies:
                pts = sorted((s.rate, getattr(s, metric)) for s in result.summaries
                             if s.policy == policy)
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=policy)
            ax.set_xlabel("arrival rate (programs/s)")
            ax.set_ylabel(f"{title} program token latency (s/token)")
            ax.set_title(f"{result.config.suite}: {title} latency")
            ax.grid(alpha=0.3)
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_reports(result: BenchResult, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"bench-{result.config.suite}"
    paths = {"json": out_dir / f"{stem}.json", "markdown": out_dir / f"{stem}.md",
             "plot": out_dir / f"{stem}.png"}
    paths["json"].write_text(json.dumps(result.to_json(), indent=2))
    paths["markdown"].write_text(markdown_table(result) + "\n")
    plot(result, paths["plot"])
    return paths
