"""The data-locality load balancer (paper Algorithm 2) against round-robin and
least-used, on two embedded replicas and a long-context program mix.

Each program reads its own long document (``--doc-tokens``, above the balancer's
2048-token threshold) and asks ``--calls`` follow-up questions in sequence, each
prompt extending the previous one (document, earlier questions and answers). Calls of
one program share a growing prefix, so the replica that served the last call holds it
in its prefix cache. Programs arrive as a Poisson process. Reports program latency
(mean, p50, p95), makespan, programs/s and the prefix-cache hit rate (cached prompt
tokens / prompt tokens), per routing policy, and writes JSON.

    python benchmarks/locality.py --out docs/locality_cpu.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")

from autellix_engine import AutellixEngine, EngineConfig  # noqa: E402
from autellix_workloads.metrics import percentile  # noqa: E402

MiB = 1 << 20


async def run_program(pool, k: int, doc: list[int], args, t0: float, arrival: float, rng):
    await asyncio.sleep(max(0.0, t0 + arrival - time.monotonic()))
    start = time.monotonic()
    prompt = list(doc)
    prompt_tokens = cached = 0
    async with pool.program(f"doc-{k}") as prog:
        for _ in range(args.calls):
            prompt += [rng.randrange(1000, 20000) for _ in range(args.question_tokens)]
            out = await prog.generate(prompt, max_tokens=args.answer_tokens, temperature=0.0,
                                      ignore_eos=True)
            prompt += list(out.token_ids)
            prompt_tokens += out.usage.prompt_tokens
            cached += out.usage.cached_tokens
    return {"latency_s": time.monotonic() - start, "prompt_tokens": prompt_tokens,
            "cached_tokens": cached, "end_s": time.monotonic() - t0}


async def run_routing(routing: str, args) -> dict:
    config = EngineConfig(model=args.model, policy="atlas", max_num_seqs=args.max_num_seqs,
                          max_model_len=args.max_model_len, kv_cache_bytes=args.kv_mib * MiB,
                          replicas=2, routing=routing)
    rng = random.Random(args.seed)
    docs = [[rng.randrange(1000, 20000) for _ in range(args.doc_tokens)]
            for _ in range(args.programs)]
    arrivals, t = [], 0.0
    for _ in range(args.programs):
        arrivals.append(t)
        t += rng.expovariate(args.rate)
    async with AutellixEngine(config) as pool:
        await pool.generate("warm up", max_tokens=2)
        t0 = time.monotonic()
        outs = await asyncio.gather(*(
            run_program(pool, k, docs[k], args, t0, arrivals[k], random.Random(k))
            for k in range(args.programs)))
    lat = [o["latency_s"] for o in outs]
    prompt = sum(o["prompt_tokens"] for o in outs)
    makespan = max(o["end_s"] for o in outs)
    return {"routing": routing, "mean_s": statistics.mean(lat), "p50_s": percentile(lat, 50),
            "p95_s": percentile(lat, 95), "makespan_s": makespan,
            "programs_per_s": args.programs / makespan,
            "prefix_cache_hit_rate": sum(o["cached_tokens"] for o in outs) / prompt,
            "prompt_tokens": prompt}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--routings", default="locality,round_robin,least_used")
    ap.add_argument("--programs", type=int, default=8)
    ap.add_argument("--calls", type=int, default=3)
    ap.add_argument("--doc-tokens", type=int, default=2200)
    ap.add_argument("--question-tokens", type=int, default=32)
    ap.add_argument("--answer-tokens", type=int, default=16)
    ap.add_argument("--rate", type=float, default=0.1, help="programs/s (Poisson)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-num-seqs", type=int, default=4)
    ap.add_argument("--max-model-len", type=int, default=4096)
    ap.add_argument("--kv-mib", type=int, default=512, help="per replica")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    rows = []
    for routing in args.routings.split(","):
        row = asyncio.run(run_routing(routing.strip(), args))
        rows.append(row)
        print(json.dumps(row), flush=True)  # noqa: T201
    print("| routing | mean s | p50 | p95 | makespan s | programs/s | prefix-cache hit rate |")  # noqa: T201
    print("|---|---|---|---|---|---|---|")  # noqa: T201
    for r in rows:
        print(f"| {r['routing']} | {r['mean_s']:.1f} | {r['p50_s']:.1f} | {r['p95_s']:.1f} | "  # noqa: T201
              f"{r['makespan_s']:.0f} | {r['programs_per_s']:.3f} | "
              f"{r['prefix_cache_hit_rate']:.0%} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
