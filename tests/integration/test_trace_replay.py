"""Trace replay round trip on the real engine: programs run as LangGraph graphs are
recorded (OTLP JSON lines, as ``autellix bench --record-trace`` writes), read back,
replayed on the engine and recorded again; both readings are the same programs: the
same stages, parallel widths and output tokens, the same kind of gaps (a chat's think
time between its runs, tool time inside a run) at least as long as was slept, and
prompts of the recorded length up to the chat template's tokens."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from autellix_engine.frontend.telemetry import OTLPJsonFileExporter
from autellix_lg import AutellixChatModel
from autellix_workloads.bench import Graphs, run_rate
from autellix_workloads.generators import generate
from autellix_workloads.graph import CHAT_GRAPH, build_chat_graph, build_graph
from autellix_workloads.spec import ProgramSpec
from autellix_workloads.traces import at_rate, read_trace

GAP_S = 0.3  # tool latency and mean think time: long against the graph's own overhead
#: A replayed call's prompt differs from the recorded one by the chat template's tokens
#: (a replayed call has no system message, so the template adds its default: about 30).
TEMPLATE_SLACK = 40


async def record(atlas, span_exporter, programs: list[ProgramSpec], path) -> list[ProgramSpec]:
    exporter = OTLPJsonFileExporter(path)
    processor = SimpleSpanProcessor(exporter)
    span_exporter.extra.append(processor)
    try:
        llm = AutellixChatModel(engine=atlas, model="tiny", temperature=0.0)
        graphs = Graphs(build_graph(llm, 1024), build_chat_graph(llm, 1024))
        await run_rate(graphs, atlas, programs, "record")
    finally:
        span_exporter.extra.remove(processor)
        exporter.shutdown()
    return read_trace(path)


def recorded_id(spec: ProgramSpec) -> str:
    """The program a trace records for ``spec``: a conversation (a run per turn) is its
    thread's program, ``"<graph>:<thread id>"``; any other run names its program."""
    return f"{CHAT_GRAPH}:{spec.program_id}" if spec.run_per_stage else spec.program_id


def widths_and_outputs(p: ProgramSpec) -> list[list[int]]:
    return [sorted(c.output_tokens for c in stage) for stage in p.stages]


@pytest.mark.timeout(600)
async def test_recorded_programs_replay_as_the_same_programs(atlas, span_exporter, tmp_path):
    # Seed 17: a tree search (a fan-out), a two-step ReAct, a four-turn chat, 19 calls.
    programs = generate("mixed", 6, 4.0, seed=17, token_scale=0.05, call_scale=0.3,
                        tool_latency_s=GAP_S, think_time_s=GAP_S)
    assert any(len(s) > 1 for p in programs for s in p.stages), "a fan-out to replay"
    for suite in ("chatbot", "react"):
        assert any(p.suite == suite and len(p.stages) > 1 for p in programs), suite
    first = await record(atlas, span_exporter, programs, tmp_path / "first.jsonl")
    second = await record(atlas, span_exporter, at_rate(first, 4.0), tmp_path / "second.jsonl")

    # What was generated is what the first trace holds.
    recorded = {p.program_id: p for p in first}
    assert sorted(recorded) == sorted(recorded_id(spec) for spec in programs)
    for spec in programs:
        got = recorded[recorded_id(spec)]
        assert widths_and_outputs(got) == widths_and_outputs(spec)
        chat = spec.run_per_stage and len(spec.stages) > 1
        assert got.run_per_stage == chat
        slept = spec.think_s if chat else (spec.tool_latency_s,) * (len(spec.stages) - 1)
        gaps = got.think_s if chat else got.tool_s
        assert len(gaps) == len(slept) and all(g >= s for g, s in zip(gaps, slept))
    # And the replay of the trace is the trace again.
    again = {p.program_id: p for p in second}
    assert sorted(again) == sorted(recorded_id(p) for p in first)
    for p in first:
        replayed = again[recorded_id(p)]
        assert widths_and_outputs(replayed) == widths_and_outputs(p)
        assert replayed.run_per_stage == p.run_per_stage
        assert len(replayed.think_s) == len(p.think_s)
        for mine, theirs in zip(replayed.stages, p.stages, strict=True):
            assert sorted(c.prompt_tokens for c in mine) == pytest.approx(
                sorted(c.prompt_tokens for c in theirs), abs=TEMPLATE_SLACK)
