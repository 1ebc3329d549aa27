"""Scheduling overhead: our ``schedule()`` + ``update_from_output()`` against stock vLLM's.

Setup (issue #2's target): 256 running and 1000 waiting requests from 100 programs,
driven with fake model outputs (no model runs, as in vLLM's scheduler tests), so the
time measured is the scheduler's own CPU time per engine step. Requests never finish
during the measurement (long ``max_tokens``), so the running/waiting split holds.

Usage: python benchmarks/sched_overhead.py [--steps 300] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")

from autellix_engine.testing import (  # noqa: E402
    FAKE_TOKEN,
    HarnessConfig,
    create_scheduler,
    make_request,
)

RUNNING, WAITING, PROGRAMS = 256, 1000, 100


def populate(policy: str | None, seed: int):
    rng = random.Random(seed)
    s = create_scheduler(
        HarnessConfig(policy=policy, max_num_seqs=RUNNING, max_num_batched_tokens=65536,
                      num_blocks=200_000, max_model_len=8192)
    )
    services = [rng.choice([0.0, 50.0, 200.0, 900.0, 3000.0]) for _ in range(PROGRAMS)]
    for i in range(RUNNING + WAITING):
        prog = i % PROGRAMS
        s.add_request(make_request(f"r{i}", 64, 4000, program_id=f"p{prog}",
                                   program_service=services[prog], first_token=i * 3 + 1))
    return s


def step_once(s):
    from vllm.v1.outputs import ModelRunnerOutput

    t0 = time.perf_counter()
    out = s.schedule()
    t1 = time.perf_counter()
    req_ids = list(out.num_scheduled_tokens)
    sampled = [
        [FAKE_TOKEN] if s.requests[r].num_computed_tokens >= s.requests[r].num_tokens else []
        for r in req_ids
    ]
    runner = ModelRunnerOutput(req_ids=req_ids, req_id_to_index={r: i for i, r in
                                                                 enumerate(req_ids)},
                               sampled_token_ids=sampled)
    t2 = time.perf_counter()
    s.update_from_output(out, runner)
    t3 = time.perf_counter()
    return (t1 - t0) + (t3 - t2), len(out.num_scheduled_tokens)


#: Our hooks around vLLM's scheduler: their own time, apart from the extra work
#: vLLM's schedule() does for the calls a preemptive policy evicts and re-admits.
OWN_HOOKS = ("_charge_step", "_reorder", "_preempt_for_waiting")


def _time_own_hooks(s, spent: list[float]) -> None:
    for name in OWN_HOOKS:
        hook = getattr(s, name, None)
        if hook is None:
            continue

        def timed(*args, _hook=hook, **kwargs):
            t = time.perf_counter()
            try:
                return _hook(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - t

        setattr(s, name, timed)


def measure(policy: str | None, steps: int, warmup: int, seed: int) -> dict:
    s = populate(policy, seed)
    for _ in range(warmup):  # prefill everything admitted; reach 256 running
        step_once(s)
    spent = [0.0]
    _time_own_hooks(s, spent)
    times, batch = [], []
    for _ in range(steps):
        dt, n = step_once(s)
        times.append(dt * 1e3)
        batch.append(n)
    times.sort()
    return {
        "own_hooks_ms": spent[0] * 1e3 / steps,
        "policy": policy or "vllm-stock",
        "mean_ms": statistics.mean(times),
        "p50_ms": times[len(times) // 2],
        "p99_ms": times[int(len(times) * 0.99) - 1],
        "running": len(s.running),
        "waiting": len(s.waiting),
        "mean_batch": statistics.mean(batch),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write results here")
    args = parser.parse_args(argv)
    rows = []
    for policy in (None, "fcfs", "mlfq", "plas", "atlas"):
        row = measure(policy, args.steps, args.warmup, args.seed)
        rows.append(row)
        print(f"{row['policy']:<11} mean {row['mean_ms']:.3f} ms  p50 {row['p50_ms']:.3f}  "  # noqa: T201
              f"p99 {row['p99_ms']:.3f}  running {row['running']} waiting {row['waiting']}",
              flush=True)
    base = rows[0]["mean_ms"]
    print("\n| scheduler | mean ms/step | p50 | p99 | extra vs stock (mean) | "  # noqa: T201
          "our hooks ms/step |")
    print("|---|---|---|---|---|---|")  # noqa: T201
    for r in rows:
        print(f"| {r['policy']} | {r['mean_ms']:.3f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | "  # noqa: T201
              f"{r['mean_ms'] - base:+.3f} ms ({(r['mean_ms'] - base) / base:+.0%}) | "
              f"{r['own_hooks_ms']:.3f} ({r['own_hooks_ms'] / base:.1%}) |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
