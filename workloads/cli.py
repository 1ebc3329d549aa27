"""The ``autellix`` command: the engine's commands plus the workload ones (``bench``,
``simulate``). It lives here, at the top of the package layering
(``autellix_engine`` <- ``autellix_lg`` <- ``autellix_workloads``), because only this
package may import all three."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from autellix_engine import cli as engine_cli


def _bench(args: argparse.Namespace) -> int:
    import asyncio
    from pathlib import Path

    from autellix_workloads.bench import BenchConfig, markdown_table, run_bench, write_reports

    vllm = dict(args.vllm)
    cfg = BenchConfig(
        suite=args.suite, rates=[float(r) for r in args.rates.split(",")],
        policies=args.policies.split(","), num_programs=args.programs, seed=args.seed,
        token_scale=args.token_scale, call_scale=args.call_scale, model=args.model,
        max_num_seqs=args.max_num_seqs,
        max_model_len=vllm.pop("max_model_len", BenchConfig.max_model_len),
        slo=args.slo, vllm_kwargs=vllm,
    )
    result = asyncio.run(run_bench(cfg))
    print(markdown_table(result))  # noqa: T201
    for kind, path in write_reports(result, Path(args.out)).items():
        print(f"{kind}: {path}")  # noqa: T201
    return 0


def _simulate(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from autellix_workloads.generators import generate
    from autellix_workloads.metrics import summarize
    from autellix_workloads.sim.des import SimConfig, StepCost, simulate

    programs = generate(args.suite, args.programs, args.rate, seed=args.seed,
                        token_scale=args.token_scale, call_scale=args.call_scale)
    cfg = SimConfig(max_num_seqs=args.max_num_seqs)
    if args.cost:
        cfg.cost = StepCost.load(Path(args.cost))
    print(f"{args.suite}: {args.programs} programs at {args.rate}/s "  # noqa: T201
          f"(max_num_seqs={args.max_num_seqs}, {cfg.cost})")
    print("| policy | mean s/tok | p95 | p99 | vs oracle | preemptions | sim seconds |")  # noqa: T201
    print("|---|---|---|---|---|---|---|")  # noqa: T201
    oracle = None
    for policy in ["srpt", *args.policies.split(",")]:
        start = time.perf_counter()
        s = summarize(policy, args.rate, simulate(programs, policy, cfg))
        took = time.perf_counter() - start
        oracle = oracle or s.mean
        print(f"| {policy} | {s.mean:.4f} | {s.p95:.4f} | {s.p99:.4f} | "  # noqa: T201
              f"{s.mean / oracle:.2f}x | {s.preemptions} | {took:.1f} |", flush=True)
    return 0


def add_commands(sub: Any) -> None:
    """Add ``bench`` and ``simulate`` to the ``autellix`` subcommands."""
    from autellix_workloads.bench import BenchConfig

    d = BenchConfig()
    p = sub.add_parser("bench", help="run a workload suite under each policy and report",
                       epilog=engine_cli.VLLM_FLAGS_HELP, allow_abbrev=False)
    p.add_argument("--suite", default=d.suite, help="chatbot, react, lats or mixed")
    p.add_argument("--rates", default=",".join(map(str, d.rates)),
                   help="programs/s, comma-separated")
    p.add_argument("--policies", default=",".join(d.policies))
    p.add_argument("--programs", type=int, default=d.num_programs, help="programs per rate")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--token-scale", type=float, default=d.token_scale)
    p.add_argument("--call-scale", type=float, default=d.call_scale)
    p.add_argument("--model", default=d.model)
    p.add_argument("--max-num-seqs", type=int, default=d.max_num_seqs)
    p.add_argument("--slo", type=float, default=None, help="s/token for throughput at SLO")
    p.add_argument("--out", default="bench-results", help="folder for JSON, Markdown, PNG")
    p.set_defaults(func=_bench, takes_vllm_flags=True)

    p = sub.add_parser("simulate", help="simulate a suite under each policy and the oracle")
    p.add_argument("--suite", default="mixed")
    p.add_argument("--programs", type=int, default=1000)
    p.add_argument("--rate", type=float, default=0.5)
    p.add_argument("--policies", default="fcfs,mlfq,plas,atlas")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--token-scale", type=float, default=d.token_scale)
    p.add_argument("--call-scale", type=float, default=d.call_scale)
    p.add_argument("--max-num-seqs", type=int, default=d.max_num_seqs)
    p.add_argument("--cost", default=None, help="StepCost JSON (fit_step_cost.py)")
    p.set_defaults(func=_simulate)



def main(argv: list[str] | None = None) -> int:
    return engine_cli.main(argv, add_commands)


if __name__ == "__main__":
    sys.exit(main())
