"""The ``autellix`` command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys


def _quiet_vllm() -> None:
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _prepare(args: argparse.Namespace) -> int:
    from autellix_engine.models import ModelError, resolve_model

    for name in args.models:
        try:
            model = resolve_model(name)
        except ModelError as e:
            print(f"error: {e}", file=sys.stderr)  # noqa: T201
            return 1
        print(f"{name}: {model.path}")  # noqa: T201
    return 0


def _demo(args: argparse.Namespace) -> int:
    from autellix_engine import demo

    demo.run(args.model, args.policies.split(","))
    return 0


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

    from autellix_engine.sim.des import SimConfig, StepCost, simulate
    from autellix_workloads.generators import generate
    from autellix_workloads.metrics import summarize

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


def _serve(args: argparse.Namespace) -> int:
    import asyncio

    import uvicorn

    from autellix_engine import AutellixEngine
    from autellix_engine.server import ServerSettings, build_app

    settings = ServerSettings(host=args.host, port=args.port, api_keys=tuple(args.api_key or ()))

    async def main() -> None:
        config = _engine_config(args)
        if args.replicas > 1 or args.remote:
            from autellix_engine.pool import EnginePool

            engine = EnginePool(config, replicas=args.replicas, routing=args.routing,
                                remote_urls=args.remote or ())
        else:
            engine = AutellixEngine(config)
        async with engine as eng:
            app = build_app(eng, settings)
            server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port,
                                                   log_level="info"))
            await server.serve()

    asyncio.run(main())
    return 0


def _replica(args: argparse.Namespace) -> int:
    """Run a remote replica: vLLM's own server with our scheduler (replaces this process)."""
    import os
    import shlex

    from autellix_engine.vllm_args import replica_command

    cmd = replica_command(_engine_config(args), host=args.host, port=args.port,
                          server_flags=args.server_flags)
    if args.print_only:
        print(shlex.join(cmd))  # noqa: T201
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.execv(cmd[0], cmd)


def _build_ext(args: argparse.Namespace) -> int:
    """Compile the swap extension now (``make setup`` runs this once)."""
    from autellix_engine.swap import ops

    try:
        ops.build(verbose=args.verbose)
    except Exception as exc:  # noqa: BLE001 - reported, and the engine falls back
        print(f"swap extension: build failed ({exc}); the engine will preempt by "  # noqa: T201
              "recomputation (preemption_mode='auto') or use the PyTorch swap fallback")
        return 0 if not args.strict else 1
    cuda = "with CUDA" if ops._with_cuda() else "CPU only"
    print(f"swap extension: built ({cuda}) in {ops.build_dir()}")  # noqa: T201
    return 0


VLLM_FLAGS_HELP = (
    "Every vLLM engine argument is accepted too, with vLLM's own name and parser (the "
    "engine flags of `vllm serve --help`: --max-model-len, --gpu-memory-utilization, "
    "--tensor-parallel-size, --quantization, --dtype, --max-num-batched-tokens, ...). "
    "Unset, they take the platform default: small values on a CPU, vLLM's on a GPU."
)


def _engine_flags(p: argparse.ArgumentParser, port: int) -> None:
    """Our own engine and address flags that ``serve`` and ``replica`` share."""
    p.add_argument("--model", default="smollm2",
                   help="smollm2, tiny or a local Hugging Face model folder")
    p.add_argument("--policy", default="atlas", help="fcfs, mlfq, plas or atlas")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=port)
    p.add_argument("--preemption-mode", default="auto", help="auto, swap or recompute")
    p.add_argument("--swap-space-bytes", type=int, default=None,
                   help="host swap pool size (default: the KV cache size)")
    p.set_defaults(takes_vllm_flags=True)


def _engine_config(args: argparse.Namespace):
    from autellix_engine import EngineConfig

    return EngineConfig(model=args.model, policy=args.policy,
                        preemption_mode=args.preemption_mode,
                        swap_space_bytes=args.swap_space_bytes, vllm_kwargs=args.vllm)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autellix", description=__doc__, allow_abbrev=False)
    parser.add_argument("-v", "--verbose", action="store_true", help="show vLLM's logs")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare-model", help="prepare built-in models once (cached)")
    p.add_argument("models", nargs="*", default=["smollm2"], help="smollm2, tiny")
    p.set_defaults(func=_prepare)

    p = sub.add_parser("build-ext", help="compile the KV swap extension (csrc/) once")
    p.add_argument("--strict", action="store_true", help="exit 1 when the build fails")
    p.set_defaults(func=_build_ext)

    p = sub.add_parser("demo", help="concurrent programs under fcfs and atlas")
    p.add_argument("--model", default="smollm2")
    p.add_argument("--policies", default="fcfs,atlas", help="comma-separated policies")
    p.set_defaults(func=_demo)

    from autellix_workloads.bench import BenchConfig

    d = BenchConfig()
    p = sub.add_parser("bench", help="run a workload suite under each policy and report",
                       epilog=VLLM_FLAGS_HELP, allow_abbrev=False)
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

    p = sub.add_parser("serve", help="OpenAI-compatible, program-aware server (engine or pool)",
                       epilog=VLLM_FLAGS_HELP, allow_abbrev=False)
    _engine_flags(p, port=8000)
    p.add_argument("--api-key", action="append", help="accepted bearer key (repeatable)")
    p.add_argument("--replicas", type=int, default=1, help="embedded engine replicas")
    p.add_argument("--remote", action="append",
                   help="URL of a remote replica (autellix replica), repeatable")
    p.add_argument("--routing", default="locality", help="locality, least_used, round_robin")
    p.set_defaults(func=_serve)

    p = sub.add_parser("replica", help="a remote replica: vllm serve with our scheduler",
                       epilog=VLLM_FLAGS_HELP + " Flags after `--` go to vLLM's server "
                       "as they are (e.g. -- --api-key KEY).", allow_abbrev=False)
    _engine_flags(p, port=8100)
    p.add_argument("--print-only", action="store_true", help="print the command, do not run")
    p.set_defaults(func=_replica)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Our flags, then vLLM's engine flags (for the commands that run an engine)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    server_flags: list[str] = []
    if "--" in argv:
        argv, server_flags = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    args.vllm, args.server_flags = {}, server_flags
    if getattr(args, "takes_vllm_flags", False):
        from autellix_engine.vllm_args import parse_vllm_flags

        try:
            args.vllm = parse_vllm_flags(rest) if rest else {}
        except ValueError as e:
            parser.error(str(e))
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if server_flags and args.command != "replica":
        parser.error("flags after `--` are only for `autellix replica`")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.verbose:
        _quiet_vllm()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
