"""A stock ``vllm serve`` with our scheduler, driven by the official ``openai`` client:
latency of a fresh session's short call behind a saturating session, with vLLM's session
id (header or body) and without it. See ``autellix_workloads.session_overtake``.

    python benchmarks/session_overtake.py [--rounds 5] [--model smollm2]
"""

import argparse
import asyncio
import statistics

from autellix_workloads import session_overtake


async def main(rounds: int, model: str) -> None:
    async with session_overtake.stock_vllm_server(model) as url:
        await session_overtake.run(url, model, "header", tag="-warm")  # first-call costs
        runs: dict[str, list] = {m: [] for m in session_overtake.MODES}
        for r in range(rounds):
            for mode in session_overtake.MODES:
                out = await session_overtake.run(url, model, mode, tag=f"-{r}-{mode}")
                runs[mode].append(out)
                print(f"round {r} {mode:6s} client {out.latency_s:.3f} s, engine "  # noqa: T201
                      f"{out.engine_latency_s:.3f} s, waited {out.waited_steps:.0f} steps",
                      flush=True)
    base = statistics.mean(o.engine_latency_s for o in runs["none"])
    print("| session id | engine latency s (mean) | client latency s (mean) | "  # noqa: T201
          "steps waited (mean) | vs none (engine) |")
    print("|---|---|---|---|---|")  # noqa: T201
    for mode, outs in runs.items():
        engine = statistics.mean(o.engine_latency_s for o in outs)
        client = statistics.mean(o.latency_s for o in outs)
        steps = statistics.mean(o.waited_steps for o in outs)
        print(f"| {mode} | {engine:.3f} | {client:.3f} | {steps:.0f} | "  # noqa: T201
              f"{base / engine:.1f}x |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--model", default="smollm2")
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.model))
