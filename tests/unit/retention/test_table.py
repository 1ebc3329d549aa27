"""The retention table's order and bookkeeping (pure; no engine)."""

from autellix_engine.core.notices import PER_REQUEST, EndNotices
from autellix_engine.core.retention import RetentionTable


def test_retaining_again_adds_only_new_blocks_and_refreshes_priority():
    table = RetentionTable(ttl_s=60)
    assert table.retain("p", [1, 2, 3], priority=0, now=10.0) == [1, 2, 3]
    assert table.retain("p", [1, 2, 3, 4], priority=1, now=20.0) == [4]
    entry = table.get("p")
    assert entry.block_ids == [1, 2, 3, 4] and entry.priority == 1 and entry.since == 20.0
    assert table.pinned_blocks == 4


def test_pressure_releases_the_worst_priority_first_then_the_one_back_last():
    table = RetentionTable(ttl_s=60)
    table.retain("good", [1], priority=0, now=0.0)
    table.retain("bad", [2], priority=3, now=0.0)
    table.retain("soon", [3], priority=1, now=5.0)
    table.retain("late", [4], priority=1, now=5.0)
    # "soon" came back fast before; "late" has never returned (the mean gap applies).
    table.entries["soon"].since = 0.0
    table.observe_return("soon", 0.5)  # gap 0.5 s
    table.retain("soon", [3], priority=1, now=5.0)
    table.entries["late"].since = 0.0
    table.observe_return("late", 20.0)  # gap 20 s
    table.retain("late", [4], priority=1, now=5.0)
    order = [e.program_id for e in table.release_order()]
    assert order == ["bad", "late", "soon", "good"]
    assert [e.program_id for e in table.release_order(exclude="bad")][0] == "late"


def test_expected_return_falls_back_to_the_mean_gap_across_programs():
    table = RetentionTable(ttl_s=60)
    table.retain("a", [1], priority=0, now=0.0)
    table.observe_return("a", 4.0)
    table.retain("b", [2], priority=0, now=10.0)
    assert table.expected_return(table.get("b")) == 14.0
    table.forget("a")  # an ended program's own gap is forgotten, not the mean
    table.retain("a", [1], priority=0, now=10.0)
    assert table.expected_return(table.get("a")) == 14.0


def test_only_programs_idle_past_the_ttl_expire():
    table = RetentionTable(ttl_s=30)
    table.retain("old", [1], priority=0, now=0.0)
    table.retain("new", [2], priority=0, now=25.0)
    assert table.expired(now=40.0) == ["old"]


def test_end_notices_go_to_every_replica_once_and_in_bounded_batches():
    notices = EndNotices(replicas=2)
    for i in range(PER_REQUEST + 3):
        notices.ended(f"p{i}")
    first = notices.take(0)
    assert len(first) == PER_REQUEST and first[0] == "p0"
    assert notices.take(0) == tuple(f"p{i}" for i in range(PER_REQUEST, PER_REQUEST + 3))
    assert notices.take(0) == ()
    assert len(notices.take(1)) == PER_REQUEST  # replica 1 still has its own copy


def test_worst_is_the_head_of_the_release_order():
    table = RetentionTable(ttl_s=60)
    for i, (prio, since) in enumerate([(0, 1.0), (2, 0.0), (2, 3.0), (1, 9.0)]):
        table.retain(f"p{i}", [i], priority=prio, now=since)
    assert table.worst() is table.release_order()[0]
    assert table.worst(exclude="p2") is table.release_order(exclude="p2")[0]
    assert RetentionTable(ttl_s=1).worst() is None


def test_a_new_programs_gap_is_learnt_from_calls_of_the_same_node():
    table = RetentionTable(ttl_s=60)
    table.retain("a", [1], priority=0, now=0.0, node="agent")
    table.observe_return("a", 8.0)  # after "agent" calls, tools take 8 s
    table.retain("b", [2], priority=0, now=0.0, node="chat")
    table.observe_return("b", 1.0)
    table.retain("c", [3], priority=0, now=10.0, node="agent")  # never returned yet
    assert table.expected_return(table.get("c")) == 18.0
    table.retain("d", [4], priority=0, now=10.0, node="unseen")  # falls back to the mean
    assert table.expected_return(table.get("d")) == 10.0 + 0.5 * 1.0 + 0.5 * 8.0
