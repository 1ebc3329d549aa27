"""The vLLM scheduler subclass, driven with fake model outputs (no model runs).

Built like vLLM's own scheduler tests: the real ``Scheduler`` code over a fake KV
cache; only the forward pass is faked (one sampled token per scheduled request).
"""

import random

import pytest

from autellix_engine.core import PolicyConfig
from autellix_engine.core.stats import CallStats
from autellix_engine.core.wire import STATS_KEY
from autellix_engine.testing import (
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
                    stats = CallStats.from_dict(o.kv_transfer_params[STATS_KEY])
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


def test_srpt_runs_the_program_with_the_least_remaining_work_first():
    """The clairvoyant yardstick: remaining work, not attained service, decides. Long
    calls of a program near its end keep running; a newcomer with more work left waits,
    one with less preempts."""
    s = create_scheduler(HarnessConfig(policy="srpt", max_num_seqs=4))
    for i in range(4):
        s.add_request(make_request(f"long{i}", 32, 200, program_id="old", program_service=1e4,
                                   first_token=100 * i + 1, remaining_work=800))
    tokens = {}
    run_until_done(s, tokens=tokens, stop_after=5)
    s.add_request(make_request("big", 16, 8, program_id="big", program_service=0.0,
                               first_token=900, remaining_work=5000))
    s.add_request(make_request("small", 16, 8, program_id="small", program_service=0.0,
                               first_token=950, remaining_work=8))
    done = run_until_done(s, tokens=tokens)
    longs = min(done[f"long{i}"][0] for i in range(4))
    assert done["small"][0] < longs < done["big"][0]
    assert all(done[f"long{i}"][2] == 200 for i in range(4))


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


@pytest.mark.parametrize("policy", ["fcfs", "mlfq", "plas", "atlas", "srpt"])
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
    assert len(s._book) == 0 and s.kv_cache_manager.block_pool.get_num_free_blocks() > 0


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


def _queue_order(scheduler):
    """The waiting queue as vLLM pops it (a heap copy: wrong if the heap is stale)."""
    return [r.request_id for r in scheduler.waiting]


def _sorted_order(scheduler):
    reqs = sorted(scheduler.waiting, key=lambda r: (r.priority, r.arrival_time))
    return [r.request_id for r in reqs]


def test_a_new_call_enters_the_waiting_heap_at_its_own_priority():
    """vLLM's heap must see the call's priority when it is pushed: changing it after the
    push leaves the heap out of order (later, worse calls admitted first)."""
    s = create_scheduler(HarnessConfig(policy="atlas", max_num_seqs=1))
    s.add_request(make_request("busy", 16, 50, program_id="busy", first_token=1))
    fake_step(s)  # busy runs; the batch is full
    for name, service in [("old", 5000.0), ("mid", 70.0), ("worse", 500.0)]:
        s.add_request(make_request(name, 16, 8, program_id=name, program_service=service,
                                   first_token=200 + len(s.requests) * 100))
    assert s.waiting.peek_request().request_id == "mid"
    assert _queue_order(s) == _sorted_order(s) == ["mid", "worse", "old"]


@pytest.mark.parametrize("interval", [1, 4])
def test_the_waiting_heap_is_in_order_at_every_step(interval):
    """Levels change every step (service, waiting); they reach request.priority only at
    decision steps, so between decisions the heap never holds a stale key."""
    s = create_scheduler(HarnessConfig(
        policy="atlas", max_num_seqs=2,
        policy_config=PolicyConfig(num_queues=4, first_boundary=8, beta=2.0,
                                   decision_interval_steps=interval)))
    rng = random.Random(interval)
    for i in range(12):
        s.add_request(make_request(f"r{i}", 8, rng.randint(4, 40), program_id=f"p{i % 5}",
                                   program_service=float(rng.choice([0, 30, 300])),
                                   first_token=50 * i + 1))
    for _ in range(400):
        if not s.has_unfinished_requests():
            break
        assert _queue_order(s) == _sorted_order(s)
        fake_step(s)
    assert not s.has_unfinished_requests()


def test_a_vllm_session_id_makes_calls_one_program():
    """No Autellix keys, only vLLM's session id (as a stock `vllm serve` passes it): the
    scheduler's local table accounts the session's service across its calls."""
    s = create_scheduler(HarnessConfig(policy="atlas", max_num_seqs=1))
    s.add_request(make_request("a1", 16, 200, session_id="sess-a", first_token=1))
    run_until_done(s)
    assert s._local.get("sess-a").service >= 200
    s.add_request(make_request("busy", 16, 30, session_id="sess-c", first_token=600))
    fake_step(s)
    s.add_request(make_request("a2", 16, 8, session_id="sess-a", first_token=200))
    s.add_request(make_request("b1", 16, 8, session_id="sess-b", first_token=400))
    assert _queue_order(s) == ["b1", "a2"]  # the fresh session goes first
    assert s._book.get("a2").start_service >= 200 and s._book.get("b1").start_service == 0
    done = run_until_done(s)
    assert done["b1"][0] < done["a2"][0]


def test_the_clients_priority_is_a_strict_outer_key():
    """A client's own priority (lower first, as in vLLM) outranks the queue level: a
    program with much service but priority -1 goes before a fresh one at priority 0."""
    s = create_scheduler(HarnessConfig(policy="atlas", max_num_seqs=1))
    s.add_request(make_request("busy", 16, 30, program_id="busy", first_token=1))
    fake_step(s)
    s.add_request(make_request("fresh", 16, 8, program_id="fresh", program_service=0.0,
                               first_token=200))
    s.add_request(make_request("vip", 16, 8, program_id="vip", program_service=5000.0,
                               priority=-1, first_token=400))
    s.add_request(make_request("low", 16, 8, program_id="low", program_service=0.0,
                               priority=1, first_token=600))
    assert _queue_order(s) == ["vip", "fresh", "low"]
    assert s._book.get("vip").level > s._book.get("fresh").level  # the level still counts inside
    done = run_until_done(s)
    assert done["vip"][0] < done["fresh"][0] < done["low"][0]


def test_within_a_queue_the_older_program_goes_first():
    """PLAS/ATLAS order a queue by the program's arrival carried on the request (the
    front end's process table), not by the call's own arrival."""
    s = create_scheduler(HarnessConfig(policy="atlas", max_num_seqs=1))
    s.add_request(make_request("busy", 16, 50, program_id="busy", first_token=1))
    fake_step(s)
    s.add_request(make_request("new-program", 16, 8, program_id="new", program_service=10.0,
                               program_arrival=2_000.0, first_token=300))
    s.add_request(make_request("old-program", 16, 8, program_id="old", program_service=10.0,
                               program_arrival=1_000.0, first_token=500))
    assert _queue_order(s) == ["old-program", "new-program"]


@pytest.mark.parametrize("ended", [True, False])
def test_an_ended_programs_history_is_not_a_later_program_of_the_same_id(ended):
    """A program id used again after its end (a LangGraph turn, a benchmark's next
    rate) starts without history: what its first call computes is not counted as
    re-prefilled. Without the end notice the same call counts the old history."""
    s = create_scheduler(HarnessConfig(policy="atlas", max_num_seqs=4, num_blocks=1000))
    s.add_request(make_request("a1", 64, 4, program_id="p", program_service=0.0))
    run_until_done(s)
    s.add_request(make_request("b1", 16, 2, program_id="q", program_service=0.0,
                               first_token=500, ended_programs=("p",) if ended else ()))
    s.add_request(make_request("a2", 64, 4, program_id="p", program_service=0.0,
                               first_token=700))
    again = run_until_done(s)["a2"][1].reprefilled_tokens
    assert (again == 0) if ended else (again > 0)
