"""The vLLM scheduler subclass, driven with fake model outputs (no model runs).

Built like vLLM's own scheduler tests: the real ``Scheduler`` code over a fake KV
cache; only the forward pass is faked (one sampled token per scheduled request).
"""

import random

import pytest

from autellix_engine.policy import PolicyConfig
from autellix_engine.policy.wire import CallStats
from autellix_engine.scheduler_harness import (
    HarnessConfig,
    create_scheduler,
    fake_step,
    make_request,
)


def run_until_done(scheduler, max_steps=10_000, on_step=None, tokens=None, stop_after=None):
    """Step until idle (or ``stop_after`` steps); return
    {request_id: (finish step, CallStats, number of output tokens)}."""
    finished, tokens = {}, ({} if tokens is None else tokens)
    for step in range(max_steps):
        if not scheduler.has_unfinished_requests() or step == stop_after:
            return finished
        out, outputs = fake_step(scheduler)
        if on_step:
            on_step(step, out)
        for eco in outputs.values():
            for o in eco.outputs:
                tokens[o.request_id] = tokens.get(o.request_id, 0) + len(o.new_token_ids)
                if o.finish_reason is not None:
                    stats = CallStats.from_transfer_params(o.kv_transfer_params)
                    finished[o.request_id] = (step, stats, tokens[o.request_id])
    raise AssertionError("scheduler did not drain")


def saturate_then_add_short(policy, num_blocks=10_000):
    s = create_scheduler(HarnessConfig(policy=policy, max_num_seqs=4, num_blocks=num_blocks))
    for i in range(4):
        s.add_request(make_request(f"long{i}", 32, 200, program_id="long",
                                   program_service=1000.0, first_token=100 * i + 1))
    tokens = {}
    run_until_done(s, tokens=tokens, stop_after=5)
    s.add_request(make_request("short", 16, 8, program_id="short", program_service=0.0,
                               first_token=900))
    return run_until_done(s, tokens=tokens)


def test_short_program_preempts_a_long_one_under_atlas():
    done = saturate_then_add_short("atlas")
    short_step = done["short"][0]
    assert short_step < min(done[f"long{i}"][0] for i in range(4))
    assert sum(done[f"long{i}"][1].preemptions for i in range(4)) >= 1
    assert all(done[f"long{i}"][2] == 200 for i in range(4))  # complete outputs


def test_short_program_waits_behind_long_calls_under_fcfs():
    done = saturate_then_add_short("fcfs")
    assert done["short"][0] > min(done[f"long{i}"][0] for i in range(4))
    assert all(done[f"long{i}"][1].preemptions == 0 for i in range(4))
    assert done["short"][1].queue_wait_s > 0


def test_kv_shortage_also_triggers_proactive_preemption():
    # 4 x (32 + 200) tokens need 60 blocks of 16; 64 blocks leave no room for the short
    # call's prompt once the long calls have grown.
    done = saturate_then_add_short("plas", num_blocks=64)
    assert done["short"][0] < min(done[f"long{i}"][0] for i in range(4))
    assert all(done[f"long{i}"][2] == 200 for i in range(4))


def test_service_accounting_splits_prefill_and_decode():
    cfg = PolicyConfig(prefill_token_weight=0.5)
    s = create_scheduler(HarnessConfig(policy="atlas", policy_config=cfg))
    s.add_request(make_request("r", 40, 10, program_id="p", program_service=0.0))
    stats = run_until_done(s)["r"][1]
    assert (stats.prefill_tokens, stats.decode_tokens) == (40, 9)  # 1st token from prefill
    assert stats.service == pytest.approx(0.5 * 40 + 9)


def test_a_long_call_demotes_as_it_runs():
    s = create_scheduler(HarnessConfig(policy="mlfq"))
    s.add_request(make_request("r", 8, 300, program_id="p", program_service=0.0))
    stats = run_until_done(s)["r"][1]
    assert stats.start_level == 0 and stats.level >= 3 and stats.demotions == stats.level


def test_requests_without_program_info_are_served_and_use_the_local_table():
    s = create_scheduler(HarnessConfig(policy="plas"))
    s.add_request(make_request("anon", 8, 5))  # no extra_args at all
    s.add_request(make_request("a1", 8, 100, program_id="agent"))  # id, no service
    done = run_until_done(s)
    assert set(done) == {"anon", "a1"}
    s.add_request(make_request("a2", 8, 5, program_id="agent", first_token=500))
    second = run_until_done(s)["a2"][1]
    assert second.start_level == PolicyConfig().level_for(done["a1"][1].service) > 0


@pytest.mark.parametrize("policy", ["fcfs", "mlfq", "plas", "atlas"])
@pytest.mark.parametrize("num_blocks", [10_000, 48], ids=["roomy", "tight-kv"])
def test_blast_random_programs_all_finish_complete(policy, num_blocks):
    rng = random.Random(1234)
    s = create_scheduler(HarnessConfig(policy=policy, max_num_seqs=6, num_blocks=num_blocks))
    expected = {}
    arrivals = sorted((rng.randrange(300), i) for i in range(60))
    services = {f"p{k}": rng.choice([0.0, 100.0, 700.0, 5000.0]) for k in range(12)}

    def add_arrivals(step, _out=None):
        while arrivals and arrivals[0][0] <= step:
            _, i = arrivals.pop(0)
            prog = f"p{i % 12}"
            max_tokens = rng.randrange(1, 60)
            s.add_request(make_request(f"r{i}", rng.randrange(4, 80), max_tokens,
                                       program_id=prog, program_service=services[prog],
                                       first_token=i * 7 + 1))
            expected[f"r{i}"] = max_tokens

    def check(step, out):
        assert len(s.running) <= 6
        assert out.total_num_scheduled_tokens == sum(out.num_scheduled_tokens.values())
        add_arrivals(step + 1)

    add_arrivals(0)
    done = run_until_done(s, on_step=check)
    while arrivals:  # idle gaps: keep feeding
        add_arrivals(arrivals[0][0])
        done.update(run_until_done(s, on_step=check))
    assert {r: n for r, (_, _, n) in done.items()} == expected
    assert all(stats is not None for _, stats, _ in done.values())
    assert s._calls == {} and s.kv_cache_manager.block_pool.get_num_free_blocks() > 0


def _preemption_steps(interval):
    """Steps at which a stream of arrivals preempted, with priorities decided every
    ``interval`` steps (roomy KV: every preemption is a priority decision)."""
    rng = random.Random(99)
    s = create_scheduler(HarnessConfig(
        policy="atlas", max_num_seqs=4,
        policy_config=PolicyConfig(decision_interval_steps=interval)))
    arrivals = sorted((rng.randrange(200), i) for i in range(40))
    steps, schedule_calls = [], [0]

    def on_step(step, out):
        steps.extend([schedule_calls[0]] * len(out.preempted_req_ids))
        schedule_calls[0] += 1
        arrive(schedule_calls[0])

    def arrive(step):
        while arrivals and arrivals[0][0] <= step:
            _, i = arrivals.pop(0)
            s.add_request(make_request(f"r{i}", rng.randrange(4, 40), rng.randrange(5, 80),
                                       program_id=f"p{i % 8}",
                                       program_service=rng.choice([0.0, 300.0, 5000.0]),
                                       first_token=i * 7 + 1))

    done = {}
    while arrivals or s.has_unfinished_requests():
        if not s.has_unfinished_requests():
            arrive(arrivals[0][0])
        done.update(run_until_done(s, on_step=on_step))
    assert len(done) == 40
    return steps


def test_multi_step_scheduling_preempts_only_on_decision_steps():
    every_step = _preemption_steps(1)
    every_4th = _preemption_steps(4)
    assert every_step, "the workload must preempt"
    assert every_4th and all(step % 4 == 0 for step in every_4th)
    assert len(every_4th) <= len(every_step)


def test_decision_interval_must_be_positive():
    with pytest.raises(ValueError, match="decision_interval_steps"):
        PolicyConfig(decision_interval_steps=0)
