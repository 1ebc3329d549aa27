"""The discrete-event simulator runs the engine's policy code: it reproduces the toy
example's unit-step schedules and its policies order as the policy tests say."""

import pytest

from autellix_engine.policy import PolicyConfig, create_policy
from autellix_workloads.generators import generate
from autellix_workloads.metrics import summarize
from autellix_workloads.sim import StepProgram, simulate_steps
from autellix_workloads.sim.des import SimConfig, StepCost, simulate
from autellix_workloads.spec import CallSpec, ProgramSpec

TOY = {"A": [4, 3, 1, 1], "B": [3, 3, 4], "C": [1, 2], "D": [4]}
TOY_CONFIG = PolicyConfig(num_queues=4, first_boundary=2, beta=100.0)


def toy_specs():
    # A 16-token prompt at weight 1/16 charges the first (prefill) step one unit, as the
    # unit-step simulator does; prefill costs no time; one step = one second.
    return [ProgramSpec(name, name, 0.0, tuple((CallSpec(16, n),) for n in lengths))
            for name, lengths in TOY.items()]


@pytest.mark.parametrize("policy", ["fcfs", "mlfq", "plas", "atlas"])
def test_toy_example_matches_the_unit_step_schedule(policy):
    cfg = SimConfig(max_num_seqs=2, cost=StepCost(1.0, 0.0, 0.0), policy_config=TOY_CONFIG,
                    max_jump=1, recompute_on_preempt=False, prompt_overhead_tokens=0)
    des = {o.program_id: o.completion_s for o in simulate(toy_specs(), policy, cfg)}
    steps = simulate_steps([StepProgram.sequential(n, ls) for n, ls in TOY.items()],
                           create_policy(policy, TOY_CONFIG), batch_size=2)
    assert des == {k: float(v) for k, v in steps.program_completion.items()}


def test_toy_total_waiting_orders_plas_before_mlfq_before_fcfs():
    cfg = SimConfig(max_num_seqs=2, cost=StepCost(1.0, 0.0, 0.0), policy_config=TOY_CONFIG,
                    max_jump=1, recompute_on_preempt=False, prompt_overhead_tokens=0)
    waiting = {}
    for policy in ("fcfs", "mlfq", "plas"):
        outs = simulate(toy_specs(), policy, cfg)
        waiting[policy] = sum(o.completion_s - o.arrival_s for o in outs) - sum(
            sum(TOY[o.program_id]) for o in outs)
    assert waiting == {"fcfs": 18.0, "mlfq": 15.0, "plas": 13.0}


def test_every_program_completes_with_all_its_tokens():
    progs = generate("mixed", 60, 1.0, seed=3, token_scale=0.2, call_scale=0.2)
    for policy in ("fcfs", "atlas", "srpt"):
        outs = {o.program_id: o for o in simulate(progs, policy)}
        assert set(outs) == {p.program_id for p in progs}
        assert all(outs[p.program_id].tokens == p.output_tokens for p in progs)
        assert all(o.completion_s >= o.arrival_s for o in outs.values())


def test_the_clairvoyant_oracle_is_the_lower_bound():
    progs = generate("chatbot", 300, 2.0, seed=9, token_scale=0.25, call_scale=0.5)
    means = {p: summarize(p, 2.0, simulate(progs, p)).mean for p in
             ("srpt", "fcfs", "mlfq", "plas", "atlas")}
    assert means["srpt"] <= min(means.values())
    assert means["plas"] < means["fcfs"]


def test_multi_step_jumps_change_little():
    progs = generate("mixed", 200, 1.0, seed=0, token_scale=0.25, call_scale=0.25)
    exact = summarize("atlas", 1.0, simulate(progs, "atlas", SimConfig(max_jump=1))).mean
    fast = summarize("atlas", 1.0, simulate(progs, "atlas", SimConfig(max_jump=32))).mean
    assert fast == pytest.approx(exact, rel=0.1)
