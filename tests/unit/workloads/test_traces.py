"""Reading traces into programs: OTLP JSON (both id encodings, JSON lines), LangSmith
run exports, stages from overlapping calls, think vs tool gaps, rate scaling."""

import json

import pytest

from autellix_workloads.bench import BenchConfig, programs_for
from autellix_workloads.sim.des import SimConfig, Simulator
from autellix_workloads.sim.profile import CostProfile
from autellix_workloads.spec import CallSpec
from autellix_workloads.traces import TraceFormatError, at_rate, read_trace

S = 1_000_000_000  # nanoseconds


def attr(key, value):
    kind = {str: "stringValue", int: "intValue", float: "doubleValue"}[type(value)]
    return {"key": key, "value": {kind: str(value) if kind == "intValue" else value}}


def span(trace_id, span_id, start, end, attrs, kind="SPAN_KIND_CLIENT"):
    return {"traceId": trace_id, "spanId": span_id, "kind": kind, "name": "chat tiny",
            "startTimeUnixNano": str(int(start * S)), "endTimeUnixNano": str(int(end * S)),
            "attributes": [attr(k, v) for k, v in attrs.items()]}


def call(trace_id, n, start, end, tokens_in, tokens_out, **extra):
    attrs = {"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": tokens_in,
             "gen_ai.usage.output_tokens": tokens_out, "autellix.call.id": f"c{trace_id}{n}",
             **extra}
    return span(trace_id, f"{n:016x}", start, end, attrs)


def request(*spans):
    return {"resourceSpans": [{"resource": {}, "scopeSpans": [{"spans": list(spans)}]}]}


def write(tmp_path, records, lines=True):
    path = tmp_path / "trace.json"
    text = "\n".join(json.dumps(r) for r in records) if lines else json.dumps(records)
    path.write_text(text)
    return path


def test_a_tree_search_run_becomes_stages_of_parallel_calls_with_tool_gaps(tmp_path):
    t = "a" * 32
    workflow = span(t, "f" * 16, 100.0, 110.0, {"gen_ai.operation.name": "invoke_workflow",
                                                "gen_ai.workflow.name": "lats"})
    spans = [workflow,
             call(t, 1, 100.0, 101.0, 50, 10),  # stage 1: one call
             call(t, 2, 101.5, 103.0, 70, 5), call(t, 3, 101.6, 102.5, 70, 7),  # fan-out
             call(t, 4, 104.0, 105.0, 90, 3)]
    # The server's span of call 4 (same call id) is the same call, not a fifth one.
    server = call(t, 4, 104.1, 104.9, 90, 3)
    server["kind"] = 2
    [p] = read_trace(write(tmp_path, [request(*spans[:3]), request(*spans[3:], server)]))
    assert p.suite == "lats" and p.program_id == t and p.arrival_s == 0.0
    assert [len(s) for s in p.stages] == [1, 2, 1]
    # New prompt tokens: the input less the previous sequential call's prompt + answer.
    assert p.stages[0] == (CallSpec(50, 10),)
    assert sorted(p.stages[1], key=lambda c: c.output_tokens) == [CallSpec(10, 5),
                                                                 CallSpec(10, 7)]
    assert p.stages[2] == (CallSpec(30, 3),)  # parallel branches are not carried
    assert p.tool_s == pytest.approx((0.5, 1.0)) and p.think_s == ()
    assert p.gap_before(2) == pytest.approx(1.0) and not p.run_per_stage


def test_turns_of_a_thread_are_one_program_with_think_time(tmp_path):
    # Two runs (traces) of one thread, base64 ids as protobuf's JSON mapping writes them.
    runs = [("AAAAAAAAAAAAAAAAAAAAAQ==", 10.0), ("AAAAAAAAAAAAAAAAAAAAAg==", 30.0)]
    spans = [call(tid, i, t0, t0 + 2, 40 + 60 * i, 20, **{
        "autellix.program.id": "chat:user-1"}) for i, (tid, t0) in enumerate(runs)]
    spans.append(call("AAAAAAAAAAAAAAAAAAAAAw==", 9, 15.0, 16.0, 8, 4))  # another program
    programs = read_trace(write(tmp_path, request(*spans), lines=False))
    assert [p.program_id for p in programs] == ["chat:user-1", "0" * 31 + "3"]
    chat = programs[0]
    assert chat.run_per_stage and chat.think_s == (18.0,) and chat.idle_s == 18.0
    assert chat.stages == ((CallSpec(40, 20),), (CallSpec(40, 20),))
    assert programs[1].arrival_s == 5.0


def test_a_langsmith_export_reads_like_a_trace(tmp_path):
    meta = {"thread_id": "t1", "assistant_id": "agent"}
    runs = [
        {"id": "r0", "run_type": "chain", "trace_id": "x", "start_time": "2026-01-01T00:00:00",
         "end_time": "2026-01-01T00:00:09"},
        {"id": "r1", "run_type": "llm", "trace_id": "x", "start_time": "2026-01-01T00:00:00",
         "end_time": "2026-01-01T00:00:02", "prompt_tokens": 30, "completion_tokens": 12,
         "extra": {"metadata": meta}},
        {"id": "r2", "run_type": "llm", "trace_id": "x", "start_time": "2026-01-01T00:00:05",
         "end_time": "2026-01-01T00:00:06", "extra": {"metadata": meta},
         "outputs": {"generations": [[{"message": {"kwargs": {"usage_metadata": {
             "input_tokens": 50, "output_tokens": 6}}}}]]}},
        {"id": "r3", "run_type": "llm", "trace_id": "y", "start_time": "2026-01-01T00:00:03",
         "end_time": None},  # never finished: not a call
    ]
    [p] = read_trace(write(tmp_path, runs))
    assert p.program_id == "agent:t1" and p.suite == "agent"
    assert p.stages == ((CallSpec(30, 12),), (CallSpec(8, 6),)) and p.tool_s == (3.0,)


def test_bad_files_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json\n")
    with pytest.raises(TraceFormatError, match="not JSON"):
        read_trace(bad)
    bad.write_text(json.dumps({"spans": []}))
    with pytest.raises(TraceFormatError, match="neither"):
        read_trace(bad)
    bad.write_text(json.dumps(request()))
    with pytest.raises(TraceFormatError, match="no LLM call"):
        read_trace(bad)


def test_arrivals_scale_to_a_rate_and_both_runners_take_the_trace(tmp_path):
    spans = [call(f"{i:032x}", i, 2.0 * i, 2.0 * i + 1, 20, 4) for i in range(5)]
    path = write(tmp_path, [request(*spans)])
    programs = read_trace(path)
    assert [p.arrival_s for p in at_rate(programs, 2.0)] == pytest.approx(
        [0.0, 0.5, 1.0, 1.5, 2.0])
    with pytest.raises(ValueError):
        at_rate(programs, 0)
    cfg = BenchConfig(trace=str(path), rates=[1.0])
    assert programs_for(cfg, 1.0) == at_rate(programs, 1.0)
    sim = SimConfig(profile=CostProfile.load("cpu-smollm2"))
    outcomes = Simulator(programs_for(cfg, 1.0), "atlas", sim).run()
    assert sorted(o.program_id for o in outcomes) == sorted(p.program_id for p in programs)
    assert all(o.tally.completion_tokens == 4 for o in outcomes)
