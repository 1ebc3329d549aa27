"""The paper's Fig. 12 in the simulator: latency against arrival rate, per suite.

For each suite, simulates the same seeded programs at each rate under plain vLLM (FCFS
without prefix caching), stock vLLM today (``fcfs``: prefix caching, chunked prefill;
the paper's "vLLM-opt"), mlfq, plas, atlas and the clairvoyant srpt, on a GPU cost
profile; writes per suite a JSON, a Markdown table and a plot (``--out``), and prints
the summary: throughput at equal latency (the rate at which each policy's mean program
token latency reaches an SLO of 3, 5 and 10x the unloaded mean, interpolated between
rates) and each policy's distance from srpt.

Usage:
  python benchmarks/sim_fig12.py --profile a100-llama3.1-8b --programs 2000 \\
      --out docs/sim-a100 [--suites chatbot,react,lats,mixed] [--seed 0] \\
      [--shape lognormal] [--think-time 3]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from autellix_workloads.bench import BenchConfig, against_oracle, write_reports
from autellix_workloads.metrics import Summary
from autellix_workloads.sim.des import SimConfig
from autellix_workloads.sim.profile import CostProfile
from autellix_workloads.sim.sweep import rate_at_latency, run_sweep

#: Arrival rates (programs/s) per suite for the A100 profile: from light load to past
#: FCFS's saturation (found by coarse sweeps; docs/benchmarks.md).
RATES = {
    "chatbot": [0.1, 0.25, 0.5, 1.0, 1.2, 1.4, 1.6, 2.0],
    "react": [0.5, 1.0, 2.0, 4.0, 6.0, 7.0, 8.0, 10.0],
    "lats": [0.02, 0.05, 0.1, 0.15, 0.2, 0.24, 0.28, 0.32],
    "mixed": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0],
}
VARIANTS = ["vllm", "fcfs", "mlfq", "plas", "atlas", "srpt"]


SLO_FACTORS = (3.0, 5.0, 10.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="a100-llama3.1-8b")
    parser.add_argument("--suites", default="chatbot,react,lats,mixed")
    parser.add_argument("--programs", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate-scale", type=float, default=1.0,
                        help="multiply the A100 rates (e.g. 2 for the H100 profile)")
    parser.add_argument("--shape", default=BenchConfig.shape,
                        help="calls per program: lognormal, lognormal:SIGMA or geometric")
    parser.add_argument("--think-time", type=float, default=BenchConfig.think_time_s,
                        help="mean seconds between a chat's turns")
    parser.add_argument("--out", default="sim-results")
    parser.add_argument("--from-json", action="store_true",
                        help="only summarize the suites' JSON already in --out")
    args = parser.parse_args(argv)
    profile = CostProfile.load(args.profile)
    sim = SimConfig(profile=profile)
    summary = {}
    for suite in args.suites.split(","):
        path = Path(args.out) / f"bench-{suite}.json"
        if args.from_json:
            summaries = [Summary(**x) for x in json.loads(path.read_text())["summaries"]]
        else:
            rates = [round(r * args.rate_scale, 4) for r in RATES[suite]]
            cfg = BenchConfig(suite=suite, rates=rates, policies=VARIANTS,
                              num_programs=args.programs, seed=args.seed, token_scale=1.0,
                              call_scale=1.0, model=profile.name, shape=args.shape,
                              think_time_s=args.think_time,
                              max_num_seqs=profile.max_num_seqs)
            result = run_sweep(cfg, sim)
            unloaded = min(x.mean for x in result.summaries if x.policy == "srpt")
            result.slo = SLO_FACTORS[1] * unloaded
            result.throughput_at_slo = {v: rate_at_latency(result.summaries, v, result.slo)
                                        for v in VARIANTS}
            paths = write_reports(result, Path(args.out))
            # Every program's outcome makes ~35 MB per suite: keep the summaries only.
            data = json.loads(paths["json"].read_text())
            data.pop("outcomes")
            paths["json"].write_text(json.dumps(data, indent=1))
            summaries = result.summaries
        summary[suite] = suite_summary(summaries)
        print(suite_markdown(suite, summary[suite]), flush=True)  # noqa: T201
    out = Path(args.out) / f"summary-{profile.name}.json"
    out.write_text(json.dumps({"profile": profile.name, "programs": args.programs,
                               "seed": args.seed, "suites": summary}, indent=2))
    print(f"summary: {out}")  # noqa: T201
    return 0


def suite_summary(summaries: list[Summary]) -> dict:
    """Throughput at equal latency (rate at which each variant's mean reaches SLO =
    factor x srpt's lowest mean) for each factor, gains over fcfs and vllm, and each
    policy's worst ratio to srpt where FCFS is at least 3x srpt."""
    oracle = against_oracle(summaries)
    fcfs = {x.rate: x.mean for x in summaries if x.policy == "fcfs"}
    srpt = {x.rate: x.mean for x in summaries if x.policy == "srpt"}
    unloaded = min(srpt.values())
    contended = [r for r in srpt if fcfs[r] >= 3 * srpt[r]]
    top = max(srpt)
    at_top = {x.policy: x.mean for x in summaries if x.rate == top}
    slos = {}
    for factor in SLO_FACTORS:
        tput = {v: rate_at_latency(summaries, v, factor * unloaded) for v in VARIANTS}
        slos[f"{factor:g}x"] = {
            "slo_s_per_token": factor * unloaded,
            "rate": tput,
            # Still under the SLO at the highest rate run: the rate is a lower bound.
            "at_least": [v for v in VARIANTS if at_top.get(v, math.inf) <= factor * unloaded],
            "vs_fcfs": {v: _ratio(tput[v], tput["fcfs"]) for v in VARIANTS},
            "vs_vllm": {v: _ratio(tput[v], tput["vllm"]) for v in VARIANTS},
        }
    return {
        "unloaded_s_per_token": unloaded,
        "slos": slos,
        "vs_srpt": {f"{p}@{r:g}": round(ratio, 3) for (p, r), (ratio, _) in oracle.items()},
        "worst_vs_srpt_where_fcfs_3x": {
            p: max((oracle[(p, r)][0] for r in contended), default=None)
            for p in ("mlfq", "plas", "atlas")},
        "rates_where_fcfs_3x": sorted(contended),
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def suite_markdown(suite: str, s: dict) -> str:
    def num(x, fmt):
        return "-" if x is None else format(x, fmt)

    factors = list(s["slos"])
    rows = [f"\n### {suite} (unloaded {s['unloaded_s_per_token']:.4f} s/token; rate /s at "
            "which the mean reaches each SLO, and its ratio to fcfs)",
            "| variant | " + " | ".join(f"SLO {f}" for f in factors)
            + " | worst vs srpt where fcfs >= 3x srpt |",
            "|---|" + "---|" * (len(factors) + 1)]
    for v in VARIANTS:
        cells = []
        for f in factors:
            slo = s["slos"][f]
            mark = ">=" if v in slo["at_least"] else ""
            cells.append(f"{mark}{num(slo['rate'][v], '.2f')} ({num(slo['vs_fcfs'][v], '.2f')}x)")
        worst = s["worst_vs_srpt_where_fcfs_3x"].get(v)
        rows.append(f"| {v} | " + " | ".join(cells) + f" | {num(worst, '.2f')} |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
