"""The ``autellix`` command: the engine's commands plus the workload ones (``bench``,
``simulate``, ``demo``). It lives here, at the top of the package layering
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
    from autellix_workloads.distributions import parse_shape

    try:
        parse_shape(args.shape)
        if not 0 <= args.think_time < float("inf"):
            raise ValueError("--think-time must be a number of seconds >= 0")
    except ValueError as e:
        print(f"autellix bench: error: {e}", file=sys.stderr)  # noqa: T201
        return 2
    try:
        suite, num_programs = _workload(args)
    except ValueError as e:
        print(f"autellix bench: error: {e}", file=sys.stderr)  # noqa: T201
        return 2
    if args.record_trace:
        from autellix_engine.frontend.telemetry import OTLPJsonFileExporter, configure_tracing

        configure_tracing(OTLPJsonFileExporter(args.record_trace))
    cfg = BenchConfig(
        suite=suite, rates=[float(r) for r in args.rates.split(",")], trace=args.trace,
        policies=args.policies.split(","), num_programs=num_programs, seed=args.seed,
        token_scale=args.token_scale, call_scale=args.call_scale, model=args.model,
        tool_latency_s=args.tool_latency, swap_space_bytes=args.swap_space_bytes,
        think_time_s=args.think_time, shape=args.shape, max_num_seqs=args.max_num_seqs,
        max_model_len=vllm.pop("max_model_len", BenchConfig.max_model_len),
        slo=args.slo, vllm_kwargs=vllm,
    )
    out = Path(args.out)
    try:
        result = asyncio.run(run_bench(cfg, out, resume=args.resume))
    except ValueError as e:  # --resume over another workload's report
        print(f"autellix bench: error: {e}", file=sys.stderr)  # noqa: T201
        return 2
    print(markdown_table(result))  # noqa: T201
    for kind, path in write_reports(result, out).items():
        print(f"{kind}: {path}")  # noqa: T201
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from autellix_engine.core import PolicyConfig, parse_policy
    from autellix_workloads.bench import BenchConfig, markdown_table, write_reports
    from autellix_workloads.distributions import parse_shape
    from autellix_workloads.sim.des import SimConfig
    from autellix_workloads.sim.profile import CostProfile
    from autellix_workloads.sim.sweep import run_sweep, variant_config

    try:
        profile = CostProfile.load(args.profile)
        sim = SimConfig(profile=profile, policy_config=PolicyConfig(),
                        max_num_seqs=args.max_num_seqs, num_gpu_blocks=args.num_gpu_blocks,
                        num_host_blocks=args.num_host_blocks,
                        preemption=args.preemption, max_model_len=args.max_model_len,
                        prefix_caching=not args.no_prefix_caching)
        for variant in args.policies.split(","):
            parse_policy(variant_config(variant, sim)[0])
        rates = [float(r) for r in args.rates.split(",")]
        if args.programs < 1 or min(rates) <= 0:
            raise ValueError("--programs must be >= 1 and every rate > 0")
        if not 0 <= args.tool_latency < float("inf"):
            raise ValueError("--tool-latency must be a number of seconds >= 0")
        if not 0 <= args.think_time < float("inf"):
            raise ValueError("--think-time must be a number of seconds >= 0")
        parse_shape(args.shape)
        suite, num_programs = _workload(args)
    except ValueError as e:
        print(f"autellix simulate: error: {e}", file=sys.stderr)  # noqa: T201
        return 2
    # The workload half of a bench config; the "model" is the cost profile.
    cfg = BenchConfig(suite=suite, rates=rates, trace=args.trace,
                      policies=args.policies.split(","), num_programs=num_programs,
                      seed=args.seed, token_scale=args.token_scale,
                      tool_latency_s=args.tool_latency, think_time_s=args.think_time,
                      shape=args.shape,
                      call_scale=args.call_scale, model=profile.name, slo=args.slo,
                      max_num_seqs=args.max_num_seqs or profile.max_num_seqs)
    print(f"{suite}: {num_programs} programs per rate on {profile.name} "  # noqa: T201
          f"({sim.max_num_seqs or profile.max_num_seqs} seqs, "
          f"{sim.num_gpu_blocks or profile.num_gpu_blocks} KV blocks of "
          f"{profile.block_size} tokens)", flush=True)
    result = run_sweep(cfg, sim, progress=True)
    print(markdown_table(result))  # noqa: T201
    if args.out:
        for kind, path in write_reports(result, Path(args.out)).items():
            print(f"{kind}: {path}")  # noqa: T201
    return 0


def _workload(args: argparse.Namespace) -> tuple[str, int]:
    """(suite, programs per rate): the ``--suite``'s, or the ``--trace`` file's (read
    now, so that a bad file is an error before any engine starts)."""
    if not args.trace:
        return args.suite, args.programs
    from autellix_workloads.traces import TRACE_SUITE, read_trace

    try:
        return TRACE_SUITE, len(read_trace(args.trace))
    except OSError as e:
        raise ValueError(f"--trace: {e}") from None


def _demo(args: argparse.Namespace) -> int:
    from autellix_workloads import demo

    demo.run(args.model, args.policies.split(","))
    return 0


TRACE_HELP = ("replay the programs of a trace file (OTLP JSON or JSON lines, as the "
              "OpenTelemetry Collector's file exporter writes; or a LangSmith run export) "
              "instead of --suite, arrivals scaled to each rate")


def add_commands(sub: Any) -> None:
    """Add ``bench``, ``simulate`` and ``demo`` to the ``autellix`` subcommands."""
    from autellix_workloads.bench import BenchConfig

    p = sub.add_parser("demo", help="concurrent programs under fcfs and atlas")
    p.add_argument("--model", default="smollm2")
    p.add_argument("--policies", default="fcfs,atlas", help="comma-separated policies")
    p.set_defaults(func=_demo)

    d = BenchConfig()
    p = sub.add_parser("bench", help="run a workload suite under each policy and report",
                       epilog=engine_cli.VLLM_FLAGS_HELP, allow_abbrev=False)
    p.add_argument("--suite", default=d.suite, help="chatbot, react, lats or mixed")
    p.add_argument("--rates", default=",".join(map(str, d.rates)),
                   help="programs/s, comma-separated")
    p.add_argument("--policies", default=",".join(d.policies),
                   help="policies; a +retain suffix turns KV retention on (atlas+retain), a "
                   "/run suffix makes each chat turn a program (atlas+retain/run)")
    p.add_argument("--programs", type=int, default=d.num_programs, help="programs per rate")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--token-scale", type=float, default=d.token_scale)
    p.add_argument("--call-scale", type=float, default=d.call_scale)
    p.add_argument("--tool-latency", type=float, default=d.tool_latency_s,
                   help="seconds each tool (the gap between a program's calls) takes")
    p.add_argument("--think-time", type=float, default=d.think_time_s,
                   help="mean seconds a chat's user thinks between turns (log-normal)")
    p.add_argument("--shape", default=d.shape,
                   help="calls per program: lognormal (fitted to the paper's mean and "
                   "max), lognormal:SIGMA, or geometric (memoryless)")
    p.add_argument("--model", default=d.model)
    p.add_argument("--max-num-seqs", type=int, default=d.max_num_seqs)
    p.add_argument("--slo", type=float, default=None, help="s/token for throughput at SLO")
    p.add_argument("--swap-space-bytes", type=int, default=None,
                   help="host swap pool size (default: the KV cache size)")
    p.add_argument("--out", default="bench-results",
                   help="folder for JSON, Markdown, PNG (rewritten after each run)")
    p.add_argument("--resume", action="store_true",
                   help="keep the runs already in --out's report (same workload); run the rest")
    p.add_argument("--trace", default=None, metavar="FILE", help=TRACE_HELP)
    p.add_argument("--record-trace", default=None, metavar="FILE",
                   help="append the run's spans to FILE as OTLP JSON lines (replayable "
                   "with --trace)")
    p.set_defaults(func=_bench, takes_vllm_flags=True)

    p = sub.add_parser("simulate", help="simulate a suite under each policy, on a cost profile")
    p.add_argument("--suite", default="mixed", choices=["chatbot", "react", "lats", "mixed"])
    p.add_argument("--programs", type=int, default=1000, help="programs per rate")
    p.add_argument("--rates", default="0.5", help="programs/s, comma-separated")
    p.add_argument("--policies", default="fcfs,mlfq,plas,atlas,srpt",
                   help="policies, or vllm (fcfs without prefix caching); a +retain "
                   "suffix turns KV retention on (atlas+retain), a /run suffix makes "
                   "each chat turn a program (atlas/run)")
    p.add_argument("--profile", default="cpu-smollm2",
                   help="a100-llama3.1-8b, h100-llama3.1-8b, cpu-smollm2 or a JSON path")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--token-scale", type=float, default=1.0)
    p.add_argument("--call-scale", type=float, default=1.0)
    p.add_argument("--tool-latency", type=float, default=BenchConfig.tool_latency_s,
                   help="seconds each tool (the gap between a program's calls) takes")
    p.add_argument("--think-time", type=float, default=d.think_time_s,
                   help="mean seconds a chat's user thinks between turns (log-normal)")
    p.add_argument("--shape", default=d.shape,
                   help="calls per program: lognormal (fitted to the paper's mean and "
                   "max), lognormal:SIGMA, or geometric (memoryless)")
    p.add_argument("--max-num-seqs", type=int, default=None, help="default: the profile's")
    p.add_argument("--num-gpu-blocks", type=int, default=None, help="default: the profile's")
    p.add_argument("--num-host-blocks", type=int, default=None, help="default: the profile's")
    p.add_argument("--max-model-len", type=int, default=None,
                   help="context limit; longer chats keep their latest turns (default: "
                   "half the KV pool)")
    p.add_argument("--preemption", default="swap", choices=["swap", "recompute"])
    p.add_argument("--no-prefix-caching", action="store_true")
    p.add_argument("--slo", type=float, default=None, help="s/token for throughput at SLO")
    p.add_argument("--out", default=None, help="folder for JSON, Markdown, PNG")
    p.add_argument("--trace", default=None, metavar="FILE", help=TRACE_HELP)
    p.set_defaults(func=_simulate)



def main(argv: list[str] | None = None) -> int:
    return engine_cli.main(argv, add_commands)


if __name__ == "__main__":
    sys.exit(main())
