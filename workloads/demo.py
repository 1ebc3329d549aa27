"""The main job for now: a few concurrent programs under ``fcfs`` and under ``atlas``.

One long multi-threaded program (an agent fanning out parallel calls, round after
round) saturates the engine; short chat programs arrive while it runs. Under FCFS the
short programs queue behind the long one's calls (program-level head-of-line
blocking); under ATLAS they enter the top queue and preempt it.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field

from autellix_engine.frontend.config import EngineConfig
from autellix_engine.frontend.engine import AutellixEngine

QUESTIONS = [
    "What is the capital of France?",
    "Name three primary colors.",
    "What is 12 times 12?",
    "Give one tip for writing clear code.",
    "What does a CPU do?",
    "Why is the sky blue?",
]


@dataclass
class DemoConfig:
    """Shape of the demo workload."""

    long_rounds: int = 3  # rounds of parallel calls of the long program
    long_fanout: int = 6  # parallel calls per round (more than max_num_seqs)
    long_tokens: int = 64  # output tokens per long call
    short_programs: int = 4
    short_calls: int = 2  # sequential calls per short program
    short_tokens: int = 32
    short_gap_s: float = 0.5  # short programs arrive this far apart, after round 1
    max_num_seqs: int = 4


@dataclass
class ProgramRun:
    name: str
    calls: int = 0
    tokens: int = 0
    latency_s: float = 0.0
    queue_wait_s: float = 0.0
    preemptions: int = 0
    answers: list[str] = field(default_factory=list)

    @property
    def token_latency(self) -> float:
        return self.latency_s / max(self.tokens, 1)


async def _long_program(
    eng: AutellixEngine, cfg: DemoConfig, round_done: asyncio.Event
) -> ProgramRun:
    run = ProgramRun("agent (long)")
    start = time.monotonic()
    async with eng.program("agent") as prog:
        for r in range(cfg.long_rounds):
            calls = [
                prog.generate(
                    [{"role": "user", "content": f"Explore idea {i} of round {r}."}],
                    thread=f"branch-{i}", max_tokens=cfg.long_tokens, ignore_eos=True,
                    temperature=0.0,
                )
                for i in range(cfg.long_fanout)
            ]
            for res in await asyncio.gather(*calls):
                _account(run, res)
            round_done.set()
    run.latency_s = time.monotonic() - start
    return run


async def _short_program(
    eng: AutellixEngine, cfg: DemoConfig, k: int, round_done: asyncio.Event
) -> ProgramRun:
    # Arrive once the long program has attained service (after its first round).
    await round_done.wait()
    await asyncio.sleep(cfg.short_gap_s * k)
    run = ProgramRun(f"chat-{k}")
    start = time.monotonic()
    messages = [{"role": "user", "content": QUESTIONS[k % len(QUESTIONS)]}]
    async with eng.program(f"chat-{k}") as prog:
        for _ in range(cfg.short_calls):
            res = await prog.generate(messages, max_tokens=cfg.short_tokens, temperature=0.0)
            _account(run, res)
            run.answers.append(res.text.strip())
            messages = [*messages, {"role": "assistant", "content": res.text},
                        {"role": "user", "content": "Say it more briefly."}]
    run.latency_s = time.monotonic() - start
    return run


def _account(run: ProgramRun, res) -> None:
    run.calls += 1
    run.tokens += res.usage.completion_tokens
    run.queue_wait_s += res.stats.queue_wait_s
    run.preemptions += res.stats.preemptions


async def run_policy(model: str, policy: str, cfg: DemoConfig) -> list[ProgramRun]:
    """Start an engine with ``policy`` and run the demo workload on it."""
    config = EngineConfig(model=model, policy=policy, max_num_seqs=cfg.max_num_seqs)
    async with AutellixEngine(config) as eng:
        # Warm up once so the first measured call pays no one-time costs.
        await eng.generate("Hello", max_tokens=2)
        round_done = asyncio.Event()
        tasks = [_long_program(eng, cfg, round_done)] + [
            _short_program(eng, cfg, k, round_done) for k in range(cfg.short_programs)
        ]
        return list(await asyncio.gather(*tasks))


def format_table(policy: str, runs: list[ProgramRun]) -> str:
    lines = [
        f"policy = {policy}",
        f"{'program':<14}{'calls':>6}{'tokens':>8}{'latency s':>11}{'s/token':>9}"
        f"{'queued s':>10}{'preempted':>11}",
    ]
    for r in runs:
        lines.append(
            f"{r.name:<14}{r.calls:>6}{r.tokens:>8}{r.latency_s:>11.2f}{r.token_latency:>9.3f}"
            f"{r.queue_wait_s:>10.2f}{r.preemptions:>11}"
        )
    return "\n".join(lines)


def short_mean_latency(runs: list[ProgramRun]) -> float:
    return statistics.mean(r.latency_s for r in runs if r.name.startswith("chat"))


async def main(model: str, policies: list[str], cfg: DemoConfig | None = None) -> dict:
    """Run the demo under each policy; print one table per policy and a summary."""
    cfg = cfg or DemoConfig()
    results = {}
    for policy in policies:
        print(f"\n== {policy}: starting engine ({model}) and running "  # noqa: T201
              f"1 long + {cfg.short_programs} short programs ...", flush=True)
        runs = await run_policy(model, policy, cfg)
        results[policy] = runs
        print(format_table(policy, runs), flush=True)  # noqa: T201
    sample = next(r for r in results[policies[-1]] if r.answers)
    print(f"\nSample answer ({sample.name}): {sample.answers[0]!r}")  # noqa: T201
    print("\nMean latency of the short programs:")  # noqa: T201
    for policy, runs in results.items():
        print(f"  {policy:<6} {short_mean_latency(runs):6.2f} s")  # noqa: T201
    return results


def run(model: str, policies: list[str]) -> None:
    asyncio.run(main(model, policies))
