"""Fit the simulator's step-cost model to the real engine.

``StepCost``: seconds per step = base + per_decode * decoding calls + per_prefill *
prefill tokens. Decode: B parallel calls from a 1-token prompt generating N tokens each;
their mean per-token execution time is one step's time at batch B. Prefill: a single
1-output-token call with a P-token prompt (prefix caching off). Least squares over
B in {1, 2, 4, 8} and P in {128, 256, 512}.

Usage: python benchmarks/fit_step_cost.py [--model smollm2] [--out docs/step_cost_smollm2.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")

from autellix_engine import AutellixEngine, EngineConfig  # noqa: E402


def least_squares(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """(intercept, slope) of the least-squares line."""
    mx, my = statistics.mean(xs), statistics.mean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs)
    return my - slope * mx, slope


async def measure(model: str, tokens: int) -> dict:
    cfg = EngineConfig(model=model, policy="fcfs", enable_prefix_caching=False, max_num_seqs=8)
    async with AutellixEngine(cfg) as eng:
        await eng.generate([5] * 8, max_tokens=4)
        decode_x, decode_y = [], []
        for b in (1, 2, 4, 8):
            outs = await asyncio.gather(*(
                eng.generate([10 + i], max_tokens=tokens, ignore_eos=True, temperature=0.0)
                for i in range(b)))
            per_step = statistics.mean(o.stats.decode_s / max(o.usage.completion_tokens - 1, 1)
                                       for o in outs)
            decode_x.append(b)
            decode_y.append(per_step)
        prefill_x, prefill_y = [], []
        for p in (128, 256, 512):
            prompt = [(7 * i) % 1000 + 10 for i in range(p)]
            out = await eng.generate(prompt, max_tokens=1, temperature=0.0)
            prefill_x.append(p)
            prefill_y.append(out.stats.execution_s)
    base, per_decode = least_squares(decode_x, decode_y)
    if per_decode < 0:  # flat within noise (a small model on 2 cores): a constant step
        base, per_decode = statistics.mean(decode_y), 0.0
    base_p, per_prefill = least_squares(prefill_x, prefill_y)
    return {"model": model, "base": max(base, 0.0), "per_decode": per_decode,
            "per_prefill": per_prefill, "decode_points": list(zip(decode_x, decode_y)),
            "prefill_points": list(zip(prefill_x, prefill_y)), "prefill_intercept": base_p}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    fit = asyncio.run(measure(args.model, args.tokens))
    text = json.dumps(fit, indent=2)
    print(text)  # noqa: T201
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
