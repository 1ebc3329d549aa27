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
    from engine.models import ModelError, resolve_model

    for name in args.models:
        try:
            model = resolve_model(name)
        except ModelError as e:
            print(f"error: {e}", file=sys.stderr)  # noqa: T201
            return 1
        print(f"{name}: {model.path}")  # noqa: T201
    return 0


def _demo(args: argparse.Namespace) -> int:
    from engine import demo

    demo.run(args.model, args.policies.split(","))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autellix", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="show vLLM's logs")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare-model", help="prepare built-in models once (cached)")
    p.add_argument("models", nargs="*", default=["smollm2"], help="smollm2, tiny")
    p.set_defaults(func=_prepare)

    p = sub.add_parser("demo", help="concurrent programs under fcfs and atlas")
    p.add_argument("--model", default="smollm2")
    p.add_argument("--policies", default="fcfs,atlas", help="comma-separated policies")
    p.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.verbose:
        _quiet_vllm()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
