import pytest

from autellix_engine.core import CallState, PolicyConfig, create_policy


def make_call(seq=0, start_service=0.0, program_wait=0.0, arrival=0.0):
    return CallState(f"c{seq}", "p", "t", arrival, seq, start_service, program_wait)


CFG = PolicyConfig(num_queues=4, first_boundary=10, beta=2.0)  # bounds 10, 20, 40


def test_mlfq_starts_every_call_in_the_top_queue():
    policy = create_policy("mlfq", CFG)
    call = make_call(start_service=1000)
    policy.admit(call)
    assert call.level == 0


def test_plas_starts_a_call_in_its_programs_queue():
    policy = create_policy("plas", CFG)
    for service, level in [(0, 0), (15, 1), (25, 2), (1000, 3)]:
        call = make_call(start_service=service)
        policy.admit(call)
        assert (call.level, call.stats.start_level) == (level, level)


def test_quantum_expiry_demotes_with_overflow_carried():
    policy = create_policy("plas", CFG)
    call = make_call()
    policy.admit(call)  # level 0, quantum 10
    assert not policy.record_service(call, 9)
    assert policy.record_service(call, 3)  # 12 > 10: level 1, 2 of its 10 used
    assert call.level == 1 and call.quantum_left == pytest.approx(8)
    assert policy.record_service(call, 100)  # past level 2's quantum (20) too
    assert call.level == 3 and call.stats.demotions == 3


def test_last_queue_never_demotes_further():
    policy = create_policy("mlfq", CFG)
    call = make_call()
    policy.admit(call)
    policy.record_service(call, 10_000)
    assert call.level == CFG.num_queues - 1


def test_fcfs_never_changes_queue():
    policy = create_policy("fcfs", CFG)
    call = make_call(start_service=500)
    policy.admit(call)
    assert not policy.record_service(call, 1000)
    assert not policy.record_wait(call, 1e6)
    assert call.level == 0 and not policy.preemptive


def test_starved_plas_call_is_promoted_and_only_call_counters_reset():
    policy = create_policy("plas", CFG)
    # Program served 30 (queue 2) and waited 10 before; the call itself served 2.
    call = make_call(start_service=30, program_wait=10)
    policy.admit(call)
    policy.record_service(call, 2)
    # (W_p + W_c) / (T_p + T_c) = (10 + W_c) / 32 reaches beta = 2 at W_c = 54.
    assert not policy.record_wait(call, 53)
    assert call.level == 2
    assert policy.record_wait(call, 1)
    assert call.level == 0 and call.stats.promotions == 1
    assert (call.wait, call.service) == (0.0, 0.0)  # call counters reset
    assert (call.program_wait, call.start_service) == (10, 30)  # program terms kept
    assert call.stats.wait == 54 and call.stats.service == 2


def test_mlfq_starvation_uses_the_call_ratio_only():
    policy = create_policy("mlfq", CFG)
    call = make_call(program_wait=1e9)  # program terms must not matter
    policy.admit(call)
    policy.record_service(call, 25)  # demoted to level 2
    assert not policy.record_wait(call, 49)  # 49 / 25 < 2
    assert policy.record_wait(call, 1)
    assert call.level == 0


def test_atlas_takes_the_max_and_plas_the_sum_over_parallel_calls():
    # Crystalclear9's worked example: history 2, parallel calls run 3 and 1.
    atlas, plas = create_policy("atlas"), create_policy("plas")
    calls = [make_call(i, start_service=2.0) for i in range(2)]
    calls[0].stats.service, calls[1].stats.service = 3.0, 1.0
    a = p = 2.0
    for c in calls:
        a = atlas.updated_program_service(a, c)
        p = plas.updated_program_service(p, c)
    assert a == 5.0  # max(2, 2 + 3, 2 + 1)
    assert p == 6.0  # 2 + 3 + 1


def test_atlas_parallel_calls_share_one_priority():
    policy = create_policy("atlas", CFG)
    siblings = [make_call(i, start_service=25.0) for i in range(5)]
    for c in siblings:
        policy.admit(c)
    assert {c.level for c in siblings} == {2}
    keys = sorted(policy.sort_key(c) for c in siblings)
    assert [k[:2] for k in keys] == [(0, 2)] * 5  # not ordered among themselves by queue


def test_sort_key_is_queue_then_arrival_then_sequence():
    policy = create_policy("plas", CFG)
    a, b, c = make_call(0, arrival=1.0), make_call(1, arrival=0.5), make_call(2, arrival=0.5)
    for call in (a, b, c):
        policy.admit(call)
    a.level = 0
    b.level = c.level = 1
    assert sorted([c, b, a], key=policy.sort_key) == [a, b, c]


def test_unknown_policy_raises_value_error():
    with pytest.raises(ValueError, match="Unknown scheduling policy"):
        create_policy("round-robin")


def test_the_clients_priority_is_the_outer_key_of_every_policy():
    for name in ("mlfq", "plas", "atlas"):
        policy = create_policy(name, CFG)
        vip, fresh = make_call(0, start_service=1000.0), make_call(1)
        vip.client_priority = -1
        for c in (vip, fresh):
            policy.admit(c)
        assert policy.sort_key(vip) < policy.sort_key(fresh)
        assert policy.engine_priority(vip) < policy.engine_priority(fresh)
        # engine_priority is the first two keys of sort_key (vLLM breaks ties by arrival)
        calls = [vip, fresh]
        for i, (service, prio) in enumerate([(1000.0, 0), (30.0, 0), (0.0, 2), (15.0, -1)]):
            calls.append(make_call(2 + i, start_service=service))
            calls[-1].client_priority = prio
            policy.admit(calls[-1])
        for a in calls:
            for b in calls:
                assert (policy.engine_priority(a) < policy.engine_priority(b)) == (
                    policy.sort_key(a)[:2] < policy.sort_key(b)[:2])


def test_plas_and_atlas_serve_a_queue_in_program_order_mlfq_in_call_order():
    # Same queue; the older program's call arrived later than the newer program's.
    old_program = CallState("c-old", "p-old", "t", 10.0, 1, program_arrival=1.0)
    new_program = CallState("c-new", "p-new", "t", 5.0, 0, program_arrival=4.0)
    for name in ("plas", "atlas"):
        policy = create_policy(name, CFG)
        for call in (old_program, new_program):
            policy.admit(call)
        assert policy.sort_key(old_program) < policy.sort_key(new_program)
    by_call = create_policy("plas", PolicyConfig(num_queues=4, first_boundary=10,
                                                 queue_order="call"))
    assert by_call.sort_key(new_program) < by_call.sort_key(old_program)
    mlfq = create_policy("mlfq", CFG)
    assert mlfq.sort_key(new_program) < mlfq.sort_key(old_program)


def test_without_a_program_arrival_a_call_is_ordered_by_its_own():
    policy = create_policy("atlas", CFG)
    a = CallState("a", "p", "t", 1.0, 0)
    b = CallState("b", "q", "t", 2.0, 1)
    for call in (a, b):
        policy.admit(call)
    assert policy.sort_key(a) < policy.sort_key(b)
