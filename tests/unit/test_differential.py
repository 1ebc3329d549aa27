"""One trace through the engine's scheduler and through the simulator: the same decisions.

The engine's scheduler (vLLM's ``Scheduler`` code with our subclass, fake model
outputs: ``autellix_engine.testing``) and the simulator (``autellix_workloads.sim``)
run the same calls on the same limits (2 running calls, a small KV cache, chunked
prefill, recomputation). Both decide by ``autellix_engine.core.decisions``, so every
step schedules the same calls with the same token counts (admissions, and evictions
for better queues and for memory, are visible there), and every call ends with the
same preemptions, demotions and queue. The simulator's claims rest on this agreement.
"""

from __future__ import annotations

import pytest

from autellix_engine.core import PolicyConfig
from autellix_engine.core.stats import CallStats
from autellix_engine.core.wire import STATS_KEY
from autellix_engine.testing import (
    BLOCK_SIZE,
    FAKE_TOKEN,
    HarnessConfig,
    create_scheduler,
    fake_step,
)
from autellix_engine.testing import make_request as engine_request
from autellix_workloads.sim.des import SimConfig, Simulator
from autellix_workloads.sim.profile import CostProfile
from autellix_workloads.spec import CallSpec, ProgramSpec

#: Programs: (program, [(prompt tokens, output tokens) of its calls, in order]), all
#: present from the start, in this order. A program's next call arrives when its
#: previous one ends (no tool time), so a call's arrival and its program's arrival
#: order calls differently (``sort_key`` and ``victim_key`` disagree).
MIXED = [("a", [(40, 150)]), ("b", [(20, 10), (70, 90)]), ("c", [(20, 30)]),
         ("d", [(150, 40)]), ("e", [(10, 5), (30, 120)]), ("f", [(90, 20)]),
         ("g", [(16, 8), (10, 60), (12, 30)]), ("h", [(60, 70)])]
#: Memory runs out while two calls of one queue run: the older program's second call
#: (the newer call) and a newer program's only call. vLLM gives up the newer call;
#: ordering by ``sort_key`` would give up the newer program's.
VICTIM = [("old", [(16, 4), (16, 200)]), ("new", [(16, 200)])]
TRACES = {"mixed": MIXED, "victim": VICTIM}
MAX_SEQS = 2
BUDGET = 128  # tokens per step: the long prompts are chunked
STEP_S = 1e-3  # the simulator's step time (its profile): the engine's arrival clock
#: Small queues, so calls are demoted while they run and better calls evict them.
POLICY = PolicyConfig(first_boundary=32, num_queues=4, beta=1e9)


def _call_id(program: str, index: int) -> str:
    return f"{program}/s{index}t0"  # the simulator's name of a program's call


def _engine(trace: list, policy: str,
            num_blocks: int) -> tuple[list[dict[str, int]], dict[str, CallStats]]:
    """The scheduler, with each program's next call added before the step after its
    previous one finished (what the front end does), at that step's time."""
    s = create_scheduler(HarnessConfig(policy=policy, max_num_seqs=MAX_SEQS,
                                       max_num_batched_tokens=BUDGET, num_blocks=num_blocks,
                                       policy_config=POLICY))
    calls = dict(trace)
    history: dict[str, list[int]] = {}  # a program's context so far: its next prefix
    order: dict[str, int] = {}  # call -> when it was added (the order finishers go on in)
    added = 0

    def add(program: str, index: int, at: float) -> None:
        nonlocal added
        prompt, output = calls[program][index]
        tokens = history.get(program, []) + [1000 * (added + 1) + i for i in range(prompt)]
        history[program] = tokens + [FAKE_TOKEN] * output  # what the fake model samples
        # No program service on the request: the scheduler's own table keeps it, as
        # the simulator's does (the same rule and the same clock).
        order[_call_id(program, index)] = added
        s.add_request(engine_request(_call_id(program, index), len(tokens), output,
                                     program_id=program, arrival_time=at,
                                     prompt_token_ids=tokens))
        added += 1

    for i, (program, _) in enumerate(trace):
        add(program, 0, i * 1e-12)
    steps, stats = [], {}
    while s.has_unfinished_requests():
        out, outputs = fake_step(s)
        steps.append(dict(out.num_scheduled_tokens))
        done = [o for eco in outputs.values() for o in eco.outputs if o.finish_reason]
        for o in done:
            stats[o.request_id] = CallStats.from_dict(o.kv_transfer_params[STATS_KEY])
        for o in sorted(done, key=lambda o: order[o.request_id]):  # the simulator's order
            program, index = o.request_id.split("/")[0], int(o.request_id.split("/s")[1][0])
            if index + 1 < len(calls[program]):
                add(program, index + 1, len(steps) * STEP_S)
        assert len(steps) < 10_000
    return steps, stats


def _simulated(trace: list, policy: str,
               num_blocks: int) -> tuple[list[dict[str, int]], dict[str, CallStats]]:
    profile = CostProfile(name="unit", description="differential", block_size=BLOCK_SIZE,
                          kv_bytes_per_token=1, max_num_seqs=MAX_SEQS,
                          max_num_batched_tokens=BUDGET,
                          linear_ms={"tokens": [1, 2], "ms": [STEP_S * 1e3] * 2},
                          kv_cache_gib=1.0, host_swap_gib=0.0)
    specs = [ProgramSpec(program, "trace", i * 1e-12,
                         tuple((CallSpec(p, o),) for p, o in calls))
             for i, (program, calls) in enumerate(trace)]
    sim = Simulator(specs, policy, SimConfig(
        profile=profile, policy_config=POLICY, num_gpu_blocks=num_blocks, max_jump=1,
        preemption="recompute", prompt_overhead_tokens=0, log_steps=True,
        max_model_len=num_blocks * profile.block_size))  # no trimming: the harness has none
    sim.run()
    return sim.step_log, sim.call_stats


def _decisions(stats: CallStats) -> tuple:
    return (stats.preemptions, stats.start_level, stats.level, stats.demotions,
            stats.promotions, stats.decode_tokens)


@pytest.mark.parametrize("policy", ["fcfs", "mlfq", "plas", "atlas"])
@pytest.mark.parametrize(("trace", "num_blocks"), [("mixed", 200), ("mixed", 24),
                                                   ("victim", 22)])
def test_the_scheduler_and_the_simulator_decide_alike(policy, trace, num_blocks):
    engine_steps, engine_stats = _engine(TRACES[trace], policy, num_blocks)
    sim_steps, sim_stats = _simulated(TRACES[trace], policy, num_blocks)
    for step, (e, s) in enumerate(zip(engine_steps, sim_steps, strict=False)):
        assert e == s, f"step {step}: engine scheduled {e}, simulator {s}"
    assert len(engine_steps) == len(sim_steps)
    assert {c: _decisions(st) for c, st in engine_stats.items()} == {
        c: _decisions(st) for c, st in sim_stats.items()}
    preempted = sum(st.preemptions for st in engine_stats.values())
    demoted = sum(st.demotions for st in engine_stats.values())
    if policy != "fcfs" and trace == "mixed":  # the trace exercises what it compares
        assert preempted > 0 and demoted > 0
    if trace == "victim" and policy != "fcfs":
        assert engine_stats[_call_id("old", 1)].preemptions > 0  # the newer call gave way
        assert engine_stats[_call_id("new", 0)].preemptions == 0
