"""KV retention in the simulator: ATLAS against ATLAS + retention, per suite, on a profile.

For each suite, simulates the same seeded programs at two loaded rates (from the Fig. 12
sweep: where FCFS is past its knee and ATLAS is not yet) under ``atlas`` and
``atlas+retain``, in swap mode (retention's host tier on) and in recompute mode (device
tier only), optionally with a smaller KV cache (``--kv-fraction``), and prints one
Markdown table: mean and p95 program token latency, re-prefilled history tokens, and
the ratio of means. ``--out`` also writes it as JSON.

Usage:
  python benchmarks/retention_sim.py --profile a100-llama3.1-8b --programs 1000 \\
      [--kv-fraction 0.25] [--tool-latency 1.0] [--out docs/sim-a100/retention.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from autellix_workloads.bench import BenchConfig
from autellix_workloads.sim.des import SimConfig
from autellix_workloads.sim.profile import CostProfile
from autellix_workloads.sim.sweep import run_sweep

#: Two loaded rates per suite on the A100 profile (docs/benchmarks.md, Fig. 12 tables).
RATES = {"chatbot": [1.0, 1.4], "react": [4.0, 6.0], "lats": [0.1, 0.15],
         "mixed": [0.4, 0.6]}
MODES = ("swap", "recompute")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="a100-llama3.1-8b")
    parser.add_argument("--suites", default="chatbot,react,mixed,lats")
    parser.add_argument("--programs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kv-fraction", type=float, default=1.0,
                        help="KV cache blocks as a fraction of the profile's")
    parser.add_argument("--tool-latency", type=float, default=BenchConfig.tool_latency_s)
    parser.add_argument("--rate-scale", type=float, default=1.0)
    parser.add_argument("--out", default=None, help="JSON of the rows")
    args = parser.parse_args(argv)
    profile = CostProfile.load(args.profile)
    blocks = max(1, int(profile.num_gpu_blocks * args.kv_fraction))
    rows = []
    print("| suite | rate /s | preemption | atlas mean | +retain mean | atlas p95 | "  # noqa: T201
          "+retain p95 | re-prefilled (atlas / +retain) | mean ratio |")
    print("|---|---|---|---|---|---|---|---|---|")  # noqa: T201
    for suite in args.suites.split(","):
        rates = [r * args.rate_scale for r in RATES[suite]]
        for mode in MODES:
            cfg = BenchConfig(suite=suite, rates=rates, policies=["atlas", "atlas+retain"],
                              num_programs=args.programs, seed=args.seed,
                              token_scale=1.0, call_scale=1.0, model=profile.name,
                              tool_latency_s=args.tool_latency)
            sim = SimConfig(profile=profile, num_gpu_blocks=blocks, preemption=mode)
            result = run_sweep(cfg, sim, log=lambda _line: None)
            by = {(s.policy, s.rate): s for s in result.summaries}
            for rate in rates:
                a, r = by[("atlas", rate)], by[("atlas+retain", rate)]
                row = dict(suite=suite, rate=rate, preemption=mode,
                           atlas=dataclasses.asdict(a), retain=dataclasses.asdict(r),
                           ratio=a.mean / r.mean)
                rows.append(row)
                print(f"| {suite} | {rate:g} | {mode} | {a.mean:.4f} | {r.mean:.4f} | "  # noqa: T201
                      f"{a.p95:.4f} | {r.p95:.4f} | {a.reprefilled_tokens:,} / "
                      f"{r.reprefilled_tokens:,} | {row['ratio']:.2f}x |", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(dict(profile=profile.name, blocks=blocks,
                                                  tool_latency_s=args.tool_latency,
                                                  programs=args.programs, rows=rows),
                                             indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
