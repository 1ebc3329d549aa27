"""Head-of-line blocking on the real engine: short programs behind a saturating one.

Scenario (issue #13): one program of 4 threads, each making 2 sequential 256-token
calls, saturates ``max_num_seqs=4``; 1 s later four one-call programs of 8 tokens
arrive. Reports the short programs' mean latency (submission to last token) under each
policy and its ratio to FCFS. Target: at least 15x lower than FCFS. On a host where
``tiny`` decodes 256 tokens in about a second, the long program's first round is nearly
over at 1 s; ``--long-tokens 1024`` restores the scenario's saturation (see
docs/benchmarks.md). Run it alone: a stray engine process skews every number.

Usage: python benchmarks/head_of_line.py [--model tiny] [--policies fcfs,atlas] [--rounds 3]
       [--delay 1.0] [--long-tokens 256]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")

from autellix_engine import AutellixEngine, EngineConfig  # noqa: E402

SHORT_TOKENS, THREADS, SHORTS = 8, 4, 4
GREEDY = {"temperature": 0.0, "ignore_eos": True}


async def one_round(eng: AutellixEngine, tag: str, delay: float, long_tokens: int
                    ) -> tuple[list[float], float]:
    """Short programs' latencies, and the long program's, in seconds."""

    async def thread(prog, i: int) -> None:
        for step in range(2):
            await prog.generate(f"{tag} branch {i} step {step}", thread=f"t{i}",
                                max_tokens=long_tokens, **GREEDY)

    async def short(i: int) -> float:
        start = time.monotonic()
        async with eng.program() as prog:
            await prog.generate(f"{tag} quick {i}", max_tokens=SHORT_TOKENS, **GREEDY)
        return time.monotonic() - start

    start = time.monotonic()
    async with eng.program() as long_prog:
        threads = [asyncio.create_task(thread(long_prog, i)) for i in range(THREADS)]
        await asyncio.sleep(delay)
        shorts = await asyncio.gather(*(short(i) for i in range(SHORTS)))
        await asyncio.gather(*threads)
    return list(shorts), time.monotonic() - start


async def main(args: argparse.Namespace) -> int:
    results = {}
    for policy in args.policies.split(","):
        cfg = EngineConfig(model=args.model, policy=policy,
                           vllm_kwargs={"max_num_seqs": THREADS, "max_model_len": 2048})
        async with AutellixEngine(cfg) as eng:
            # first-call costs (compilation, caches)
            await one_round(eng, "warm-up", args.delay, args.long_tokens)
            shorts, longs = [], []
            for r in range(args.rounds):
                s, long_s = await one_round(eng, f"round {r}", args.delay, args.long_tokens)
                shorts += s
                longs.append(long_s)
                print(f"{policy} round {r}: short mean {statistics.mean(s):.3f} s, "  # noqa: T201
                      f"long program {long_s:.2f} s", flush=True)
        results[policy] = (statistics.mean(shorts), max(shorts), statistics.mean(longs))
    base = results.get("fcfs", (float("nan"),))[0]
    print("\n| policy | short programs mean s | max s | long program s | fcfs / policy |")  # noqa: T201
    print("|---|---|---|---|---|")  # noqa: T201
    for policy, (mean, worst, long_s) in results.items():
        print(f"| {policy} | {mean:.3f} | {worst:.3f} | {long_s:.2f} | {base / mean:.1f}x |")  # noqa: T201
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny")
    p.add_argument("--policies", default="fcfs,atlas")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--delay", type=float, default=1.0, help="short programs arrive after")
    p.add_argument("--long-tokens", type=int, default=256)
    sys.exit(asyncio.run(main(p.parse_args())))
