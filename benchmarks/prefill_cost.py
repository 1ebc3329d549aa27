"""Cost of a prefill token relative to a decode step, on the real engine.

This calibrates ``PolicyConfig.prefill_token_weight`` (service = decode tokens +
weight * prefill tokens). A single call at a time: the prefill cost is the execution
time of a 1-token call with an N-token prompt, the decode cost is the per-step
execution time of a long generation from a 1-token prompt.

Usage: python benchmarks/prefill_cost.py [--model tiny] [--prompt-tokens 512]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")

from autellix_engine import AutellixEngine, EngineConfig  # noqa: E402


async def main_async(args) -> None:
    async with AutellixEngine(EngineConfig(model=args.model, enable_prefix_caching=False)) as eng:
        await eng.generate([5] * 16, max_tokens=4)  # warm up
        prefill, decode = [], []
        for r in range(args.repeats):
            prompt = [(r * 7 + i) % 1000 + 10 for i in range(args.prompt_tokens)]
            out = await eng.generate(prompt, max_tokens=1, temperature=0.0)
            prefill.append(out.stats.execution_s / args.prompt_tokens)
            out = await eng.generate([11 + r], max_tokens=args.decode_tokens,
                                     ignore_eos=True, temperature=0.0)
            decode.append(out.stats.execution_s / args.decode_tokens)
    p, d = statistics.median(prefill), statistics.median(decode)
    print(f"model={args.model} prompt={args.prompt_tokens} tokens")  # noqa: T201
    print(f"prefill: {p * 1e3:.3f} ms/token  decode: {d * 1e3:.3f} ms/step  "  # noqa: T201
          f"ratio: 1/{d / p:.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--decode-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    asyncio.run(main_async(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
