import threading

import pytest

from autellix_engine.core import (
    CallState,
    ProcessTable,
    ProgramEndedError,
    UnknownProgramError,
    create_policy,
)
from autellix_engine.core.stats import CallStats


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_start_call_complete_and_end():
    table = ProcessTable()
    pid = table.start_program()
    ticket = table.begin_call(pid, "main")
    assert ticket.program_service == 0.0
    assert table.get(pid).active_threads == ("main",)
    stats = CallStats(service=40, wait=3, preemptions=1)
    table.complete_call(pid, ticket.call_id, stats, completion_tokens=32)
    snap = table.get(pid)
    t = snap.tally
    assert (snap.service, snap.wait, t.calls, t.completion_tokens) == (40, 3, 1, 32)
    assert snap.tally.preemptions == 1 and snap.active_threads == ()
    ticket2 = table.begin_call(pid, "main")
    assert (ticket2.program_service, ticket2.program_wait) == (40, 3)
    final = table.end_program(pid)
    assert final.tally.calls == 1 and pid not in table


def test_unknown_program_is_created_implicitly_by_a_call():
    table = ProcessTable()
    table.begin_call("adhoc", "t0")
    assert "adhoc" in table and table.get("adhoc").active_threads == ("t0",)


def test_a_ticket_carries_when_its_program_began():
    clock = FakeClock()
    table = ProcessTable(clock=clock)
    first = table.begin_call("p", "t0")
    clock.now += 5
    second = table.begin_call("p", "t1")
    assert first.program_arrival == second.program_arrival == 1000.0
    # On the caller's clock (the scheduler's local table: vLLM's arrival_time).
    assert table.begin_call("q", "t0", arrival=7.5).program_arrival == 7.5
    assert table.begin_call("q", "t1", arrival=9.0).program_arrival == 7.5


def test_calls_on_an_ended_program_raise():
    table = ProcessTable()
    pid = table.start_program("p1")
    table.end_program(pid)
    with pytest.raises(ProgramEndedError, match="p1"):
        table.begin_call(pid, "main")
    with pytest.raises(UnknownProgramError):
        table.end_program(pid)


def test_a_program_that_never_ran_is_discarded_and_its_id_stays_free():
    table = ProcessTable()
    ticket = table.begin_call("refused", "main")  # created by its first call ...
    table.abort_call("refused", ticket.call_id)  # ... which the replica refused
    table.discard("refused")
    assert table.get("refused") is None
    table.begin_call("refused", "main")  # not an ended program: calls are taken
    ran = table.begin_call("ran", "main")
    table.complete_call("ran", ran.call_id, CallStats(service=5))
    table.discard("ran")  # it ran: kept
    assert table.get("ran").service == 5


def test_duplicate_start_is_refused():
    table = ProcessTable()
    table.start_program("p")
    with pytest.raises(ValueError, match="already running"):
        table.start_program("p")


def test_atlas_rule_gives_critical_path_for_parallel_threads():
    table = ProcessTable(create_policy("atlas").updated_program_service)
    pid = table.start_program()
    first = table.begin_call(pid, "main")
    table.complete_call(pid, first.call_id, CallStats(service=2, wait=0))
    tickets = [table.begin_call(pid, f"t{i}") for i in range(2)]
    assert {t.program_service for t in tickets} == {2}
    assert len(table.get(pid).active_threads) == 2
    table.complete_call(pid, tickets[0].call_id, CallStats(service=3, wait=0))
    table.complete_call(pid, tickets[1].call_id, CallStats(service=1, wait=0))
    assert table.get(pid).service == 5


def test_abort_removes_the_thread_without_service():
    table = ProcessTable()
    pid = table.start_program()
    t = table.begin_call(pid, "main")
    table.abort_call(pid, t.call_id)
    snap = table.get(pid)
    assert snap.active_threads == () and snap.num_aborted == 1 and snap.service == 0


def test_ttl_collects_only_idle_programs():
    clock = FakeClock()
    table = ProcessTable(ttl_s=60, clock=clock)
    idle = table.start_program("idle")
    busy = table.start_program("busy")
    table.begin_call(busy, "main")  # never completes: still active
    clock.now += 61
    assert table.collect_stale() == [idle]
    assert busy in table and idle not in table
    with pytest.raises(ProgramEndedError):
        table.begin_call(idle, "main")


def test_completion_after_end_is_ignored():
    table = ProcessTable()
    pid = table.start_program()
    t = table.begin_call(pid, "main")
    table.end_program(pid)
    assert table.complete_call(pid, t.call_id, CallStats(service=5, wait=0)) == 0.0
    assert pid not in table


def test_concurrent_calls_from_many_threads_are_all_accounted():
    table = ProcessTable()
    pid = table.start_program()
    n_threads, n_calls = 8, 200

    def worker(k):
        for _ in range(n_calls):
            t = table.begin_call(pid, f"w{k}")
            table.complete_call(pid, t.call_id, CallStats(service=1.0, wait=0.5),
                                completion_tokens=2)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = table.get(pid)
    assert snap.tally.calls == n_threads * n_calls
    assert snap.service == n_threads * n_calls
    assert snap.tally.completion_tokens == 2 * n_threads * n_calls
    assert snap.active_threads == ()


def test_update_rule_receives_the_call_start_service():
    seen = []

    def rule(program_service: float, call: CallState) -> float:
        seen.append((program_service, call.start_service, call.stats.service))
        return program_service + call.stats.service

    table = ProcessTable(rule)
    pid = table.start_program()
    t = table.begin_call(pid, "main")
    table.complete_call(pid, t.call_id, CallStats(service=7, wait=0))
    assert seen == [(0.0, 0.0, 7)]


def test_the_table_is_bounded_least_recently_active_idle_programs_go_first():
    clock = FakeClock()
    table = ProcessTable(ttl_s=1e9, max_programs=3, clock=clock)
    ids = []
    for i in range(5):
        clock.now = float(i)
        ids.append(table.start_program(f"p{i}"))
    busy = table.begin_call("p0", "main")  # the oldest, but with a call in flight
    clock.now = 10.0
    assert table.collect_stale() == ["p1", "p2"]
    assert {p.program_id for p in table.snapshot()} == {"p0", "p3", "p4"}
    table.complete_call("p0", busy.call_id, CallStats())
    assert table.ended_snapshot("p1") is not None and table.collect_stale() == []
