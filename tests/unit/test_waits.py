"""The lazy wait ledger promotes at the same steps as charging every waiting call every
step (the accounting it replaced), and charges the same totals."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autellix_engine.core import CallState, PolicyConfig, create_policy
from autellix_engine.core.waits import WaitLedger

CFG = PolicyConfig(num_queues=4, first_boundary=10, beta=2.0)


def make_calls(policy, services):
    calls = []
    for i, s in enumerate(services):
        call = CallState(f"c{i}", f"p{i % 3}", "t", 0.0, i, start_service=s, program_wait=i)
        policy.admit(call)
        calls.append(call)
    return calls


def eager(policy_name, services, schedules):
    """The reference: every step, service to the scheduled, one wait to the others."""
    policy = create_policy(policy_name, CFG)
    calls = make_calls(policy, services)
    promoted_at = []
    for step, chosen in enumerate(schedules):
        for i, call in enumerate(calls):
            if i in chosen:
                policy.record_service(call, 1.0)
            elif policy.record_wait(call, 1.0):
                promoted_at.append((step, i))
    return calls, promoted_at


def lazy(policy_name, services, schedules):
    policy = create_policy(policy_name, CFG)
    calls = make_calls(policy, services)
    ledger = WaitLedger(policy)
    for call in calls:
        ledger.start(call)
    promoted_at, last = [], set()
    for step, chosen in enumerate(schedules):
        for i in last - chosen:
            ledger.start(calls[i])
        for i in chosen:
            if ledger.stop(calls[i].call_id):
                promoted_at.append((step, i))
            policy.record_service(calls[i], 1.0)
        for call in ledger.tick(1.0, 0.5):
            promoted_at.append((step, calls.index(call)))
        last = chosen
    for call in calls:
        ledger.stop(call.call_id)
    return calls, promoted_at, ledger


@pytest.mark.parametrize("policy_name", ["mlfq", "plas", "atlas", "fcfs", "srpt"])
@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    services=st.lists(st.sampled_from([0.0, 5.0, 15.0, 30.0, 100.0]), min_size=1, max_size=6),
    schedules=st.lists(st.sets(st.integers(0, 5), max_size=3), min_size=1, max_size=80),
)
def test_lazy_ledger_matches_charging_every_step(policy_name, services, schedules):
    schedules = [{i for i in s if i < len(services)} for s in schedules]
    ref, ref_promoted = eager(policy_name, services, schedules)
    got, got_promoted, _ = lazy(policy_name, services, schedules)
    assert sorted(got_promoted) == sorted(ref_promoted)
    for a, b in zip(ref, got, strict=True):
        assert (a.level, a.wait, a.service) == (b.level, b.wait, b.service)
        assert a.stats.wait == b.stats.wait and a.stats.promotions == b.stats.promotions


def test_waiting_seconds_are_charged_when_a_call_stops_waiting():
    policy = create_policy("plas", CFG)
    [call] = make_calls(policy, [0.0])
    ledger = WaitLedger(policy)
    ledger.start(call)
    ledger.tick(1.0, 0.25)
    ledger.tick(1.0, 0.5)
    assert call.stats.queue_wait_s == 0  # lazily: not yet
    ledger.stop(call.call_id)
    assert call.stats.queue_wait_s == pytest.approx(0.75) and call.stats.wait == 2
    assert call.call_id not in ledger and not ledger.stop(call.call_id)


def test_next_promotion_is_known_without_touching_waiting_calls():
    policy = create_policy("mlfq", CFG)  # beta 2: promoted after waiting 2x its service
    calls = make_calls(policy, [0.0, 0.0])
    policy.record_service(calls[0], 12)  # demoted to level 1 with 12 served: deadline 24
    ledger = WaitLedger(policy)
    for call in calls:
        ledger.start(call)
    assert ledger.steps_to_next_promotion() == 24  # calls[1] is at level 0: never
    assert ledger.tick(23, 0) == []
    assert ledger.tick(1, 0) == [calls[0]] and calls[0].level == 0
    assert math.isinf(ledger.steps_to_next_promotion())


def test_a_call_admitted_as_it_arrives_is_charged_nothing():
    policy = create_policy("plas", CFG)
    calls = make_calls(policy, [30.0, 30.0])  # level 2: threshold 2 x 30 = 60 units
    calls[1].program_wait = 100.0  # its program already waited past the threshold
    ledger = WaitLedger(policy)
    for call in calls:
        ledger.start(call)
    # No step passed: the first is charged nothing and keeps its queue; the second
    # was due as it began waiting and is promoted as it stops (it was starved).
    assert not ledger.stop(calls[0].call_id)
    assert (calls[0].level, calls[0].wait, calls[0].stats.queue_wait_s) == (2, 0.0, 0.0)
    assert ledger.stop(calls[1].call_id) and calls[1].level == 0
