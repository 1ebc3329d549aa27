"""Validate the simulator against the real engine: same workload, same seed.

Runs a suite on the real embedded engine under each policy (``autellix_workloads.bench``) and
simulates the very same programs on the fitted CPU cost profile (``cpu-smollm2``) with
the engine's KV cache size; prints mean program latency (response time) and mean
program token latency for both, and their ratio. Target (issues #4, #13): simulated
mean program latency within 15% of the engine's, also with a KV cache small enough to
bind (``--kv-cache-bytes``).

Usage: python benchmarks/validate_sim.py [--rate 0.5] [--kv-cache-bytes 134217728]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")

from autellix_workloads.bench import BenchConfig, run_bench  # noqa: E402
from autellix_workloads.generators import generate  # noqa: E402
from autellix_workloads.metrics import ProgramOutcome  # noqa: E402
from autellix_workloads.sim.des import SimConfig, Simulator  # noqa: E402
from autellix_workloads.sim.profile import GIB, CostProfile  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu-smollm2", help="cost profile (name or JSON)")
    parser.add_argument("--kv-cache-bytes", type=int, default=None,
                        help="the engine's KV cache (default: EngineConfig's 1 GiB)")
    parser.add_argument("--max-model-len", type=int, default=BenchConfig.max_model_len,
                        help="lower it with a small KV cache (vLLM needs one full context)")
    parser.add_argument("--suite", default="mixed")
    parser.add_argument("--rate", type=float, default=0.5)
    parser.add_argument("--programs", type=int, default=24)
    parser.add_argument("--policies", default="fcfs,atlas")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--real-json", help="reuse an `autellix bench` JSON (same settings)")
    args = parser.parse_args(argv)
    vllm = {"kv_cache_memory_bytes": args.kv_cache_bytes} if args.kv_cache_bytes else {}
    cfg = BenchConfig(suite=args.suite, rates=[args.rate], policies=args.policies.split(","),
                      num_programs=args.programs, seed=args.seed, vllm_kwargs=vllm,
                      max_model_len=args.max_model_len)
    if args.real_json:
        data = json.loads(Path(args.real_json).read_text())
        cfg = BenchConfig(**data["config"])
        args.rate = cfg.rates[0]
        real_outcomes = {k: [ProgramOutcome.from_dict(o) for o in v]
                         for k, v in data["outcomes"].items()}
    else:
        real_outcomes = asyncio.run(run_bench(cfg)).outcomes
    programs = generate(cfg.suite, cfg.num_programs, args.rate, seed=cfg.seed,
                        token_scale=cfg.token_scale, call_scale=cfg.call_scale,
                        tool_latency_s=cfg.tool_latency_s)
    profile = CostProfile.load(args.profile)
    kv_bytes = cfg.vllm_kwargs.get("kv_cache_memory_bytes") or int(profile.kv_gib * GIB)
    sim_cfg = SimConfig(profile=profile, max_num_seqs=cfg.max_num_seqs,
                        num_gpu_blocks=kv_bytes // profile.block_bytes)
    print(f"\n{cfg.suite}, {cfg.num_programs} programs at {args.rate}/s, seed {cfg.seed}, "  # noqa: T201
          f"{sim_cfg.num_gpu_blocks} KV blocks of {profile.block_size} tokens")
    print("| policy | engine mean latency s | simulated | ratio | engine s/token | simulated "  # noqa: T201
          "| simulated preemptions | evicted blocks |")
    print("|---|---|---|---|---|---|---|---|")  # noqa: T201
    for policy in cfg.policies:
        eng = real_outcomes[f"{policy}@{args.rate}"]
        runner = Simulator(programs, policy, sim_cfg)
        sim = runner.run()
        e_lat = statistics.mean(o.response_s for o in eng)
        s_lat = statistics.mean(o.response_s for o in sim)
        e_tok = statistics.mean(o.token_latency for o in eng)
        s_tok = statistics.mean(o.token_latency for o in sim)
        print(f"| {policy} | {e_lat:.2f} | {s_lat:.2f} | {s_lat / e_lat:.2f} | "  # noqa: T201
              f"{e_tok:.4f} | {s_tok:.4f} | {runner.stats.preemptions} | "
              f"{runner.stats.evicted_blocks} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
