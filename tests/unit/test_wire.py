from autellix_engine.core.stats import CallStats, SwapStats
from autellix_engine.core.wire import ProgramTag


def test_tag_round_trips_through_extra_args():
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    tag = ProgramTag("prog", "t3", 12.5, 4.0, traceparent)
    assert ProgramTag.from_extra_args(tag.to_extra_args(), "req") == tag
    full = ProgramTag("prog", "t3", 12.5, 4.0, None, remaining_work=7.0,
                      program_arrival=1_764_000_000.25)
    assert ProgramTag.from_extra_args(full.to_extra_args(), "req") == full


def test_request_without_tag_is_its_own_program():
    tag = ProgramTag.from_extra_args(None, "req-9")
    assert (tag.program_id, tag.thread_id, tag.program_service) == ("req-9", "main", None)


def test_malformed_values_are_treated_as_absent():
    tag = ProgramTag.from_extra_args(
        {"program_id": 42, "program_service": "lots", "program_wait": -3}, "r"
    )
    assert tag.program_id == "42" and tag.program_service is None and tag.program_wait == 0.0


def test_call_stats_round_trip_through_a_dict_and_ignore_unknown_keys():
    stats = CallStats(3.5, 1.0, 0.2, 0.4, 0.1, 10, 3, 1, 2, 0, 1, 0, SwapStats(1, 1, 0, 4, 0.5), 7)
    data = stats.to_dict()
    assert CallStats.from_dict(data) == stats
    assert CallStats.from_dict({**data, "from_a_newer_peer": 1}) == stats
    assert stats.decode_s == stats.execution_s - stats.prefill_s


def test_vllms_session_id_names_the_program_when_no_program_key_is_given():
    assert ProgramTag.from_extra_args(None, "req-1", session_id="s").program_id == "s"
    assert ProgramTag.from_extra_args({}, "req-1", session_id=None).program_id == "req-1"
    ours = ProgramTag.from_extra_args({"program_id": "p"}, "req-1", session_id="s")
    assert ours.program_id == "p"  # our key wins over the session id


def test_end_notices_round_trip_and_malformed_ones_are_ignored():
    tag = ProgramTag("p", "main", ended_programs=("a", "b"))
    back = ProgramTag.from_extra_args(tag.to_extra_args(), "req-1")
    assert back.ended_programs == ("a", "b") and not back.is_last_call
    assert ProgramTag("p", "main", ended_programs=("p",)).is_last_call
    for bad in (5, "a,b", {"a": 1}, [None, True, 1.5]):
        parsed = ProgramTag.from_extra_args({"program_id": "p", "ended_programs": bad}, "r")
        assert parsed.ended_programs == ()
    assert "ended_programs" not in ProgramTag("p", "main").to_extra_args()
