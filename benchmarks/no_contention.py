"""No contention: one program's call latency through the Autellix engine API against
plain vLLM (``AsyncLLM`` with its stock scheduler) on the same model and settings.

Both engines are up at once and measured in alternating rounds (A, B, A, B, ...) so
that machine drift hits both alike; only one runs at a time.

Usage: python benchmarks/no_contention.py [--model smollm2] [--calls 10] [--rounds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import sys
import time
import uuid

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")

from autellix_engine import AutellixEngine, EngineConfig  # noqa: E402
from autellix_engine.frontend.models import resolve_model  # noqa: E402
from autellix_engine.frontend.vllm_args import engine_args  # noqa: E402


async def start_plain_vllm(config: EngineConfig):
    from vllm.v1.engine.async_llm import AsyncLLM

    args = engine_args(config, resolve_model(config.model))
    args = dataclasses.replace(args, scheduler_cls=None, scheduling_policy="fcfs",
                               additional_config={})
    return AsyncLLM.from_engine_args(args)


async def plain_call(llm, prompt_ids: list[int], max_tokens: int) -> float:
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    params = SamplingParams(max_tokens=max_tokens, ignore_eos=True, temperature=0.0,
                            output_kind=RequestOutputKind.DELTA)
    start = time.perf_counter()
    async for _ in llm.generate({"prompt_token_ids": prompt_ids}, params, uuid.uuid4().hex):
        pass
    return time.perf_counter() - start


async def autellix_call(eng: AutellixEngine, prompt_ids, max_tokens, program_id) -> float:
    start = time.perf_counter()
    await eng.generate(prompt_ids, program_id=program_id, max_tokens=max_tokens,
                       ignore_eos=True, temperature=0.0)
    return time.perf_counter() - start


async def main_async(args) -> None:
    config = EngineConfig(model=args.model, policy=args.policy)
    eng = await AutellixEngine(config).start()
    plain = await start_plain_vllm(config)
    prompt_ids = eng.tokenizer.encode("Write a short story about a lighthouse keeper.")
    for _ in range(3):  # warm both
        await plain_call(plain, prompt_ids, 8)
        await autellix_call(eng, prompt_ids, 8, "warmup")
    times: dict[str, list[float]] = {"vllm": [], "autellix": []}
    async with eng.program() as prog:
        for r in range(args.rounds):
            for _ in range(args.calls):
                times["vllm"].append(await plain_call(plain, prompt_ids, args.max_tokens))
            for _ in range(args.calls):
                times["autellix"].append(
                    await autellix_call(eng, prompt_ids, args.max_tokens, prog.id)
                )
            print(f"round {r + 1}/{args.rounds} done", flush=True)  # noqa: T201
    plain.shutdown()
    await eng.aclose()
    base = statistics.mean(times["vllm"])
    print(f"\nmodel={args.model} policy={args.policy} calls={args.calls}x{args.rounds} "  # noqa: T201
          f"max_tokens={args.max_tokens} prompt_tokens={len(prompt_ids)}")
    print("| engine | mean s/call | p50 s/call | vs plain vLLM |")  # noqa: T201
    print("|---|---|---|---|")  # noqa: T201
    for name, ts in times.items():
        mean = statistics.mean(ts)
        print(f"| {name} | {mean:.4f} | {statistics.median(ts):.4f} | "  # noqa: T201
              f"{(mean / base - 1) * 100:+.1f}% |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--policy", default="atlas")
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=64)
    asyncio.run(main_async(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
