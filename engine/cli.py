"""The ``autellix`` command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from typing import Any


def _envelope_template(args: argparse.Namespace) -> int:
    """Print the model's chat template wrapped for the tool envelope (what ``autellix
    serve --tool-call-parser autellix_envelope`` uses), for a stock ``vllm serve``."""
    from transformers import AutoTokenizer

    from autellix_engine.frontend.envelope_parser import wrapped_template
    from autellix_engine.frontend.models import ModelError, resolve_model

    try:
        tokenizer = (None if args.chat_template
                     else AutoTokenizer.from_pretrained(resolve_model(args.model).path))
        template = wrapped_template(args.chat_template, tokenizer)
    except (ModelError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)  # noqa: T201
        return 1
    print(template, end="")  # noqa: T201
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from autellix_engine.frontend.models import ModelError, resolve_model

    for name in args.models:
        try:
            model = resolve_model(name)
        except ModelError as e:
            print(f"error: {e}", file=sys.stderr)  # noqa: T201
            return 1
        print(f"{name}: {model.path}")  # noqa: T201
    return 0


def _serve(args: argparse.Namespace) -> int:
    from autellix_engine.server import ServerSettings
    from autellix_engine.server.launch import serve

    # Keys also from the environment, as `vllm serve` reads VLLM_API_KEY.
    env_keys = [os.environ[v] for v in ("AUTELLIX_API_KEY", "VLLM_API_KEY") if os.environ.get(v)]
    settings = ServerSettings(
        host=args.host, port=args.port, api_keys=tuple([*(args.api_key or ()), *env_keys]),
        max_body_bytes=args.max_body_bytes, max_tokens_limit=args.max_tokens_limit,
        max_programs_per_key=args.max_programs_per_key,
        program_rate_per_s=args.program_rate_per_s, metrics_auth=args.metrics_auth,
        shutdown_timeout_s=args.shutdown_timeout)
    return serve(_engine_config(args), settings, frontend_flags=args.frontend_flags)


def _replica(args: argparse.Namespace) -> int:
    """Run a remote replica: vLLM's own server with our scheduler, supervised."""
    import dataclasses
    import shlex

    from autellix_engine.frontend.replica import supervise
    from autellix_engine.frontend.telemetry import otlp_traces_endpoint
    from autellix_engine.frontend.vllm_args import replica_command

    config = _engine_config(args)
    endpoint = otlp_traces_endpoint()
    if endpoint and config.otlp_traces_endpoint is None and (
            "otlp_traces_endpoint" not in config.vllm_kwargs):
        config = dataclasses.replace(config, otlp_traces_endpoint=endpoint)
    cmd = replica_command(config, host=args.host, port=args.port,
                          server_flags=args.server_flags)
    if args.print_only:
        print(shlex.join(cmd))  # noqa: T201
        return 0
    return supervise(cmd, stop_timeout_s=args.stop_timeout, max_restarts=args.max_restarts)


def _build_ext(args: argparse.Namespace) -> int:
    """Compile the swap extension now (``make setup`` runs this once)."""
    from autellix_engine.extension import swap_ops as ops

    try:
        ops.build(verbose=args.verbose)
    except Exception as exc:  # noqa: BLE001 - reported, and the engine falls back
        print(f"swap extension: build failed ({exc}); the engine will preempt by "  # noqa: T201
              "recomputation (preemption_mode='auto') or use the PyTorch swap fallback",
              file=sys.stderr)
        return 1
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
                   help="smollm2, tiny, a local Hugging Face model folder or a Hugging Face "
                   "model id (org/name; from the hub cache with HF_HUB_OFFLINE=1)")
    p.add_argument("--policy", default="atlas",
                   help="fcfs, mlfq, plas, atlas, or srpt (the clairvoyant yardstick)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=port)
    p.add_argument("--preemption-mode", default="auto", help="auto, swap or recompute")
    p.add_argument("--swap-space-bytes", type=int, default=None,
                   help="host swap pool size (default: the KV cache size)")
    p.add_argument("--kv-retention", action="store_true",
                   help="keep live programs' KV between their calls (docs/design.md)")
    p.set_defaults(takes_vllm_flags=True)


def _engine_config(args: argparse.Namespace):
    from autellix_engine import EngineConfig

    replicas = dict(replicas=args.replicas, remote_urls=tuple(args.remote or ()),
                    routing=args.routing) if args.command == "serve" else {}
    return EngineConfig(model=args.model, policy=args.policy,
                        preemption_mode=args.preemption_mode,
                        swap_space_bytes=args.swap_space_bytes, vllm_kwargs=args.vllm,
                        kv_retention=args.kv_retention,
                        **replicas)


class _HelpWithVllmFlags(argparse.Action):
    """``autellix serve --help``: our flags, then ``vllm serve``'s (vLLM's own help)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        from vllm.entrypoints.launchers.cli_args import FrontendArgs
        from vllm.utils.argparse_utils import FlexibleArgumentParser

        from autellix_engine.frontend.vllm_args import vllm_arg_parser

        server = FrontendArgs.add_cli_args(FlexibleArgumentParser(
            prog="vllm serve's server flags", add_help=False))
        engine = vllm_arg_parser()
        engine.prog = "vLLM's engine flags"
        print(parser.format_help(), server.format_help(), engine.format_help(),  # noqa: T201
              sep="\n")
        parser.exit()


#: Adds more subcommands (``autellix_workloads.cli`` adds ``bench`` and ``simulate``).
AddCommands = Callable[[Any], None]


def build_parser(add_commands: AddCommands | None = None) -> argparse.ArgumentParser:
    """The ``autellix`` parser: the engine's commands plus ``add_commands``'."""
    from autellix_engine.server.settings import ServerSettings

    parser = argparse.ArgumentParser(prog="autellix", description=__doc__, allow_abbrev=False)
    parser.add_argument("-v", "--verbose", action="store_true", help="show vLLM's logs")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare-model", help="prepare built-in models once (cached)")
    p.add_argument("models", nargs="*", default=["smollm2"], help="smollm2, tiny")
    p.set_defaults(func=_prepare)

    p = sub.add_parser(
        "envelope-template", help="print a model's chat template wrapped for the tool "
        "envelope, for a stock vllm serve (--chat-template FILE --tool-parser-plugin "
        "<autellix_engine/frontend/envelope_parser.py> --tool-call-parser autellix_envelope)")
    p.add_argument("--model", default="smollm2", help="smollm2, tiny, a folder or a hub id")
    p.add_argument("--chat-template",
                   help="wrap this template (a file, or its text) instead of the model's")
    p.set_defaults(func=_envelope_template)

    p = sub.add_parser("build-ext", help="compile the KV swap extension (csrc/) once; "
                       "exits 1 when the build fails")
    p.set_defaults(func=_build_ext)

    p = sub.add_parser("serve", help="OpenAI-compatible, program-aware server (engine or pool)",
                       epilog=VLLM_FLAGS_HELP, allow_abbrev=False, add_help=False)
    p.add_argument("-h", "--help", action=_HelpWithVllmFlags, nargs=0,
                   help="show this help, then vLLM's flags, and exit")
    _engine_flags(p, port=8000)
    p.add_argument("--api-key", action="append",
                   help="accepted bearer key (repeatable; also AUTELLIX_API_KEY, VLLM_API_KEY)")
    defaults = ServerSettings()
    p.add_argument("--max-body-bytes", type=int, default=defaults.max_body_bytes,
                   help="larger request bodies get 413")
    p.add_argument("--max-tokens-limit", type=int, default=defaults.max_tokens_limit,
                   help="the most max_tokens a request may ask for")
    p.add_argument("--max-programs-per-key", type=int, default=defaults.max_programs_per_key,
                   help="live programs one API key may hold (429 beyond)")
    p.add_argument("--program-rate-per-s", type=float, default=defaults.program_rate_per_s,
                   help="programs one API key may create per second (429 beyond)")
    p.add_argument("--metrics-auth", action="store_true", help="require a key on /metrics")
    p.add_argument("--shutdown-timeout", type=float, default=defaults.shutdown_timeout_s,
                   help="seconds calls in flight may finish after SIGTERM/SIGINT")
    p.add_argument("--replicas", type=int, default=None,
                   help="embedded engine replicas (default: 1, or 0 with --remote)")
    p.add_argument("--remote", action="append",
                   help="URL of a remote replica (autellix replica), repeatable")
    p.add_argument("--routing", default="locality", help="locality, least_used, round_robin")
    p.set_defaults(func=_serve)

    p = sub.add_parser("replica", help="a remote replica: vllm serve with our scheduler",
                       epilog=VLLM_FLAGS_HELP + " Flags after `--` go to vLLM's server "
                       "as they are (e.g. -- --api-key KEY).", allow_abbrev=False)
    _engine_flags(p, port=8100)
    p.add_argument("--print-only", action="store_true", help="print the command, do not run")
    p.add_argument("--stop-timeout", type=float, default=30.0,
                   help="seconds vllm serve may take to stop after SIGTERM before it is killed")
    p.add_argument("--max-restarts", type=int, default=5,
                   help="restarts in a row of a server that keeps exiting early (then exit 1)")
    p.set_defaults(func=_replica)
    if add_commands is not None:
        add_commands(sub)
    return parser


def parse_args(argv: list[str] | None = None,
               add_commands: AddCommands | None = None) -> argparse.Namespace:
    """Our flags, then vLLM's engine flags (for the commands that run an engine)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    server_flags: list[str] = []
    if "--" in argv:
        argv, server_flags = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    parser = build_parser(add_commands)
    args, rest = parser.parse_known_args(argv)
    if args.verbose:  # before vLLM's first import (the engine flags below) sets its logger
        from autellix_engine.frontend.logs import verbose_vllm

        verbose_vllm()
    args.vllm, args.server_flags, args.frontend_flags = {}, server_flags, []
    if args.command == "serve":
        from autellix_engine.frontend.vllm_args import split_serve_flags

        try:
            args.vllm, args.frontend_flags = split_serve_flags(rest)
        except ValueError as e:
            parser.error(str(e))
    elif getattr(args, "takes_vllm_flags", False):
        from autellix_engine.frontend.vllm_args import parse_vllm_flags

        try:
            args.vllm = parse_vllm_flags(rest) if rest else {}
        except ValueError as e:
            parser.error(str(e))
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if server_flags and args.command != "replica":
        parser.error("flags after `--` are only for `autellix replica`")
    return args


def main(argv: list[str] | None = None, add_commands: AddCommands | None = None) -> int:
    """Run one ``autellix`` command (the console script is ``autellix_workloads.cli``,
    which adds the workload commands)."""
    args = parse_args(argv, add_commands)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
