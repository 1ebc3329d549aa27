"""Program latency under heavy preemption: ``swap`` against ``recompute``, and
multi-step scheduling (priority decisions every N steps) against every step.

Runs the mixed agentic suite (LangGraph programs on ``AutellixChatModel``) on SmolLM2
with ATLAS and a KV cache small enough that calls are preempted often, once per
variant, and reports program token latency (mean, p50, p95), preemptions, swaps,
recompute fallbacks and seconds spent copying KV. Writes JSON and prints a Markdown
table.

    python benchmarks/swap_preemption.py --out docs/swap_preemption_cpu.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from dataclasses import asdict

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")

from autellix_engine import AutellixEngine, EngineConfig, PolicyConfig  # noqa: E402
from autellix_workloads.bench import run_rate  # noqa: E402
from autellix_workloads.generators import generate  # noqa: E402
from autellix_workloads.metrics import summarize  # noqa: E402

MiB = 1 << 20
#: name -> (preemption_mode, decision_interval_steps)
VARIANTS = {
    "recompute-N1": ("recompute", 1),
    "swap-N1": ("swap", 1),
    "swap-N4": ("swap", 4),
    "recompute-N4": ("recompute", 4),
}


async def run_variant(name: str, args: argparse.Namespace) -> dict:
    from autellix_lg import AutellixChatModel
    from autellix_workloads.graph import build_graph

    mode, interval = VARIANTS[name]
    config = EngineConfig(
        model=args.model, policy="atlas", max_num_seqs=args.max_num_seqs,
        max_model_len=args.max_model_len, kv_cache_bytes=args.kv_mib * MiB, preemption_mode=mode,
        policy_config=PolicyConfig(decision_interval_steps=interval),
    )
    programs = generate(args.suite, args.programs, args.rate, seed=args.seed,
                        token_scale=args.token_scale, call_scale=args.call_scale)
    async with AutellixEngine(config) as eng:
        graph = build_graph(AutellixChatModel(engine=eng, model=args.model, temperature=0.0))
        started = time.monotonic()
        outcomes = await run_rate(graph, eng, programs, name)
        wall = time.monotonic() - started
        tally = eng.totals()
        totals = {"preemptions": tally.preemptions, **asdict(tally.swap)}
    summary = summarize(name, args.rate, outcomes).to_dict()
    return {"variant": name, "mode": mode, "decision_interval_steps": interval,
            "wall_s": wall, "summary": summary, "totals": totals}


def table(rows: list[dict]) -> str:
    lines = ["| variant | mean s/tok | p50 | p95 | preemptions | swaps out/in | fallbacks "
             "| swap s | wall s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s, t = r["summary"], r["totals"]
        lines.append(
            f"| {r['variant']} | {s['mean']:.3f} | {s['p50']:.3f} | {s['p95']:.3f} | "
            f"{t['preemptions']} | {t['swaps_out']}/{t['swaps_in']} | {t['swap_fallbacks']} | "
            f"{t['swap_s']:.3f} | {r['wall_s']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--suite", default="mixed")
    ap.add_argument("--programs", type=int, default=24)
    ap.add_argument("--rate", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--token-scale", type=float, default=0.25)
    ap.add_argument("--call-scale", type=float, default=0.25)
    ap.add_argument("--max-num-seqs", type=int, default=8)
    ap.add_argument("--kv-mib", type=int, default=96, help="KV cache size (small: preempts)")
    ap.add_argument("--max-model-len", type=int, default=2048)
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    rows = [asyncio.run(run_variant(v.strip(), args)) for v in args.variants.split(",")]
    print(table(rows))  # noqa: T201
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
