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
from typing import Any

from tqdm import tqdm

from autellix_engine.core.stats import Tally
from autellix_workloads.generators import generate
from autellix_workloads.metrics import ProgramOutcome, Summary, summarize, throughput_at_slo
from autellix_workloads.spec import ProgramSpec
from autellix_workloads.traces import at_rate, read_trace
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
    think_time_s: float = 3.0  # mean user think time between chat turns
    shape: str = "lognormal"  # of calls per program (distributions.parse_shape)
    model: str = "smollm2"
    max_num_seqs: int = 8
    max_model_len: int = 4096
    slo: float | None = None  # s/token for "throughput at equal latency"; None: 2x best
    swap_space_bytes: int | None = None  # host swap pool (None: the engine's default)
    vllm_kwargs: dict = field(default_factory=dict)  # further vLLM engine arguments
    trace: str | None = None  # replay this trace file's programs instead of the suite's


def programs_for(cfg: BenchConfig, rate: float) -> list[ProgramSpec]:
    """The programs a run at ``rate`` replays: the suite's, generated from the seed, or
    the trace's (``cfg.trace``), arrivals scaled to ``rate``."""
    if cfg.trace:
        return at_rate(read_trace(cfg.trace), rate)
    return generate(cfg.suite, cfg.num_programs, rate, seed=cfg.seed,
                    token_scale=cfg.token_scale, call_scale=cfg.call_scale,
                    tool_latency_s=cfg.tool_latency_s, think_time_s=cfg.think_time_s,
                    count_shape=cfg.shape)


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


@dataclass(frozen=True)
class Graphs:
    """What runs the programs: the program graph, and the chat graph whose runs are
    turns on a thread (with the scope of a chat's program)."""

    program: Any
    chat: Any
    scope: str = "thread"


async def _run_program(graphs: Graphs, spec: ProgramSpec, t0: float, eng) -> ProgramOutcome:
    from autellix_workloads.graph import initial_state, run_config

    await asyncio.sleep(max(0.0, t0 + spec.arrival_s - time.monotonic()))
    arrival = time.monotonic() - t0
    if spec.run_per_stage:
        tally = await _run_turns(graphs, spec, eng)
    else:
        await graphs.program.ainvoke(initial_state(spec), config=run_config(spec))
        snap = eng.program_stats(spec.program_id)
        tally = snap.tally if snap else Tally()
    completion = time.monotonic() - t0
    return ProgramOutcome(spec.program_id, spec.suite, arrival, completion, tally,
                          spec.idle_s)


async def _run_turns(graphs: Graphs, spec: ProgramSpec, eng) -> Tally:
    """A chat: one run per turn on its thread, the user's think time between them;
    the tally of its program (or, in run scope, of each turn's)."""
    from autellix_lg import end_thread
    from autellix_workloads.graph import CHAT_GRAPH, turn_config, turn_input, turn_program

    for stage in range(len(spec.stages)):
        if stage:
            await asyncio.sleep(spec.gap_before(stage))
        await graphs.chat.ainvoke(turn_input(),
                                  config=turn_config(spec, stage, graphs.scope))
    if graphs.scope == "run":
        ids = [turn_program(spec, i) for i in range(len(spec.stages))]
    else:
        ids = end_thread(spec.program_id, CHAT_GRAPH)
    tally = Tally()
    for program_id in ids:
        snap = eng.program_stats(program_id)
        if snap is not None:
            tally.merge(snap.tally)
    return tally


async def run_rate(graphs: Graphs, eng, programs: list[ProgramSpec],
                   label: str) -> list[ProgramOutcome]:
    """Replay ``programs`` at their arrival times; a progress bar counts completions."""
    t0 = time.monotonic()
    bar = tqdm(total=len(programs), desc=label, unit="prog", leave=True)

    async def one(spec):
        out = await _run_program(graphs, spec, t0, eng)
        bar.update(1)
        return out

    try:
        return list(await asyncio.gather(*(one(s) for s in programs)))
    finally:
        bar.close()


def result_of(cfg: BenchConfig, outcomes: dict[str, list[ProgramOutcome]]) -> BenchResult:
    """The report of the runs done so far (``"variant@rate"`` -> outcomes), in the
    config's order of variants and rates."""
    summaries = [summarize(v, r, outcomes[f"{v}@{r}"]) for v in cfg.policies
                 for r in cfg.rates if f"{v}@{r}" in outcomes]
    slo = cfg.slo or 2 * min(s.mean for s in summaries)
    tput = {p: throughput_at_slo(summaries, p, slo) for p in cfg.policies}
    return BenchResult(cfg, summaries, outcomes, slo, tput)


def load_runs(cfg: BenchConfig, out_dir: Path) -> dict[str, list[ProgramOutcome]]:
    """The runs an earlier ``autellix bench`` of the same workload wrote to ``out_dir``
    (for ``--resume``): none if there is no report; an error if its workload differs."""
    path = report_paths(cfg.suite, out_dir)["json"]
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    earlier = {k: v for k, v in data["config"].items() if k not in ("rates", "policies")}
    mine = {k: v for k, v in asdict(cfg).items() if k not in ("rates", "policies")}
    if earlier != mine:
        changed = sorted(k for k in mine if earlier.get(k) != mine[k])
        raise ValueError(f"{path} holds runs of another workload (differs in "
                         f"{', '.join(changed)}); use another --out or drop --resume")
    return {k: [ProgramOutcome.from_dict(o) for o in v] for k, v in data["outcomes"].items()}


async def run_bench(cfg: BenchConfig, out_dir: Path | None = None,
                    resume: bool = False) -> BenchResult:
    """Run every (variant, rate) of ``cfg``. With ``out_dir``, the reports are written
    after each run (an interrupted bench keeps what it finished); with ``resume``, runs
    already in ``out_dir``'s report are kept and not run again."""
    from autellix_engine import AutellixEngine, EngineConfig
    from autellix_lg import AutellixChatModel
    from autellix_workloads.graph import build_chat_graph, build_graph

    outcomes = load_runs(cfg, out_dir) if resume and out_dir is not None else {}
    for variant in cfg.policies:
        todo = [r for r in cfg.rates if f"{variant}@{r}" not in outcomes]
        if not todo:
            continue
        policy, retain, scope = split_variant(variant)
        engine_cfg = EngineConfig(
            model=cfg.model, policy=policy, kv_retention=retain,
            swap_space_bytes=cfg.swap_space_bytes,
            vllm_kwargs={"max_num_seqs": cfg.max_num_seqs, "max_model_len": cfg.max_model_len,
                         **cfg.vllm_kwargs})
        async with AutellixEngine(engine_cfg) as eng:
            llm = AutellixChatModel(engine=eng, model=cfg.model, policy=policy, temperature=0.0)
            for rate in todo:
                # A fresh checkpointer per run: each rate replays the same chat threads.
                graphs = Graphs(build_graph(llm, cfg.max_model_len),
                                build_chat_graph(llm, cfg.max_model_len), scope)
                programs = programs_for(cfg, rate)
                outcomes[f"{variant}@{rate}"] = await run_rate(graphs, eng, programs,
                                                               f"{variant} @ {rate}/s")
                if out_dir is not None:
                    write_reports(result_of(cfg, outcomes), out_dir)
    return result_of(cfg, outcomes)


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
            "wait share | preemptions | prefilled tokens | re-prefilled tokens | vs srpt | "
            "gain captured |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in result.summaries:
        ratio, share = oracle.get((s.policy, s.rate), (float("nan"), float("nan")))
        rows.append(f"| {s.policy} | {s.rate:g} | {s.programs} | {s.mean:.4f} | {s.p50:.4f} | "
                    f"{s.p95:.4f} | {s.p99:.4f} | {s.programs_per_s:.3f} | "
                    f"{s.wait_share:.0%} | {s.preemptions} | {s.prefilled_tokens} | "
                    f"{s.reprefilled_tokens} | "
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
    """Latency against rate per policy (the paper's Fig. 12) on a log axis, and, when
    the clairvoyant ``srpt`` ran, each policy's mean as a ratio to it; with a single
    rate, grouped bars of mean/p50/p95/p99 per policy instead. Legends sit outside the
    axes, never over the data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policies = [p for p in result.config.policies
                if any(s.policy == p for s in result.summaries)]
    if len({s.rate for s in result.summaries}) == 1:
        fig, ax = plt.subplots(figsize=(8, 4))
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
    else:
        oracle = against_oracle(result.summaries)
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for policy in policies:
            pts = sorted((s.rate, s.mean) for s in result.summaries if s.policy == policy)
            axes[0].plot([r for r, _ in pts], [m for _, m in pts], marker="o", label=policy)
            ratios = sorted((r, oracle[(p, r)][0]) for p, r in oracle if p == policy)
            if ratios:
                axes[1].plot([r for r, _ in ratios], [x for _, x in ratios], marker="o")
        axes[0].set_yscale("log")
        axes[0].set_ylabel("mean program token latency (s/token, log)")
        axes[0].set_title(f"{result.config.suite}: latency against load")
        if oracle:
            axes[1].set_ylabel("mean latency / clairvoyant srpt's")
            axes[1].axhline(1.0, color="grey", lw=0.8)
            axes[1].set_title("distance from the clairvoyant oracle")
        else:
            axes[1].set_visible(False)
        for ax in axes:
            ax.set_xlabel("arrival rate (programs/s)")
            ax.grid(alpha=0.3)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def report_paths(suite: str, out_dir: Path) -> dict[str, Path]:
    stem = f"bench-{suite}"
    return {"json": out_dir / f"{stem}.json", "markdown": out_dir / f"{stem}.md",
            "plot": out_dir / f"{stem}.png"}


def write_reports(result: BenchResult, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = report_paths(result.config.suite, out_dir)
    tmp = paths["json"].with_suffix(".json.tmp")  # a whole file or none, if interrupted
    tmp.write_text(json.dumps(result.to_json(), indent=2))
    tmp.replace(paths["json"])
    paths["markdown"].write_text(markdown_table(result) + "\n")
    plot(result, paths["plot"])
    return paths
