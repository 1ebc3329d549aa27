"""Recorded programs as workloads: read traces of real agent runs into ``ProgramSpec``s.

``autellix bench --trace FILE`` and ``autellix simulate --trace FILE`` replay what a
trace recorded, so a user sees what the policies, retention and routing would do for
their own agents. Two formats are read:

- **OTLP JSON**: the OpenTelemetry Collector's ``file`` exporter output (one
  ``ExportTraceServiceRequest`` in OTLP JSON per line), a single such object, or a list
  of them; ``autellix bench --record-trace`` writes this format. Calls are the
  ``gen_ai.operation.name = chat | text_completion`` spans that are not server spans
  (a server's span of the same call is the same call, seen twice), with their token
  usage (``gen_ai.usage.*``).
- **LangSmith run exports**: a JSON list (or JSON Lines) of runs; calls are the runs of
  ``run_type: "llm"``, with ``prompt_tokens``/``completion_tokens`` (or the outputs'
  ``usage_metadata``).

A call's program is its ``autellix.program.id`` (what the engine scheduled), else its
LangGraph thread (``gen_ai.conversation.id`` / LangSmith's ``thread_id`` metadata,
scoped by graph), else its trace (one run). A program's calls form stages: a call
that starts before every call of the current stage has ended runs beside them (a
``Send`` fan-out); otherwise it begins the next stage. The gap before a stage is the
time between the previous stage's last end and its first start: the user's think
time when the two stages are in different runs of the program (turns of a thread:
not counted in latency), tool time when they are in one run. A program whose every
turn is one call in a run of its own replays as a conversation, a run per turn on a
thread (``ProgramSpec.run_per_stage``); any other replays as one run of the program
graph, sleeping each gap.

A call's new prompt tokens are its input tokens less the context the replay carries
into it: the replay's graph (``autellix_workloads.graph``) carries a sequential call's
prompt and answer on to the next stage and does not carry parallel branches, so a
replayed call's prompt has the recorded length (up to chat-template tokens).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from autellix_workloads.spec import CallSpec, ProgramSpec

#: The ``suite`` of a replayed program without a graph name.
TRACE_SUITE = "trace"
_CALL_OPERATIONS = frozenset({"chat", "text_completion"})
_SERVER_KIND = (2, "SPAN_KIND_SERVER")  # OTLP's SpanKind.SERVER, as a number or a name


class TraceFormatError(ValueError):
    """The file is not an OTLP JSON trace or a LangSmith run export."""


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """One LLM call as a trace recorded it (times in seconds on the trace's clock)."""

    program: str
    run: str  # the trace (one graph run) it belongs to
    start_s: float
    end_s: float
    input_tokens: int
    output_tokens: int
    graph: str | None = None


def read_trace(path: str | Path) -> list[ProgramSpec]:
    """The programs of the trace file at ``path``, in arrival order, arrivals relative
    to the first call.

    Raises:
        TraceFormatError: the file is neither format, or holds no LLM call.
    """
    text = Path(path).read_text()
    records = _json_records(text, path)
    if any(isinstance(r, dict) and "resourceSpans" in r for r in records):
        calls = _otlp_calls(records)
    elif any(isinstance(r, dict) and "run_type" in r for r in records):
        calls = _langsmith_calls(records)
    else:
        raise TraceFormatError(f"{path}: neither OTLP JSON (resourceSpans) nor LangSmith "
                               "runs (run_type)")
    if not calls:
        raise TraceFormatError(f"{path}: no LLM call with token usage in the trace")
    return programs_of(calls)


def programs_of(calls: list[RecordedCall]) -> list[ProgramSpec]:
    """Group recorded calls into programs and their stages (see the module docstring)."""
    by_program: dict[str, list[RecordedCall]] = {}
    for call in calls:
        by_program.setdefault(call.program, []).append(call)
    t0 = min(c.start_s for c in calls)
    programs = [_program(pid, sorted(cs, key=lambda c: (c.start_s, c.end_s)), t0)
                for pid, cs in by_program.items()]
    return sorted(programs, key=lambda p: (p.arrival_s, p.program_id))


def at_rate(programs: list[ProgramSpec], rate: float) -> list[ProgramSpec]:
    """``programs`` with their arrival times scaled to a mean of ``rate`` per second
    (the recorded burstiness kept); a single program arrives at 0."""
    if rate <= 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    span = programs[-1].arrival_s - programs[0].arrival_s
    if len(programs) < 2 or span <= 0:
        return [replace(p, arrival_s=i / rate) for i, p in enumerate(programs)]
    scale = (len(programs) - 1) / rate / span
    return [replace(p, arrival_s=(p.arrival_s - programs[0].arrival_s) * scale)
            for p in programs]


def _program(program_id: str, calls: list[RecordedCall], t0: float) -> ProgramSpec:
    stages: list[list[RecordedCall]] = []
    for call in calls:
        if stages and call.start_s < min(c.end_s for c in stages[-1]):
            stages[-1].append(call)
        else:
            stages.append([call])
    think, tool = [], []
    for before, stage in zip(stages, stages[1:], strict=False):
        gap = max(0.0, min(c.start_s for c in stage) - max(c.end_s for c in before))
        between_runs = stage[0].run != before[-1].run
        think.append(gap if between_runs else 0.0)
        tool.append(0.0 if between_runs else gap)
    carried, specs = 0, []
    for stage in stages:
        specs.append(tuple(CallSpec(max(1, c.input_tokens - carried), max(1, c.output_tokens))
                           for c in stage))
        if len(stage) == 1:  # a sequential call's prompt and answer are the next context
            carried = stage[0].input_tokens + stage[0].output_tokens
    graph = next((c.graph for c in calls if c.graph), None)
    # A conversation (one call per turn, each turn a run) replays as one: a run per turn.
    chat = any(think) and not any(tool) and all(len(s) == 1 for s in stages)
    return ProgramSpec(program_id=program_id, suite=graph or TRACE_SUITE,
                       arrival_s=calls[0].start_s - t0, stages=tuple(specs),
                       run_per_stage=chat, think_s=tuple(think) if any(think) else (),
                       tool_s=tuple(tool))


# --- file formats -------------------------------------------------------------------
def _json_records(text: str, path: str | Path) -> list[Any]:
    """A JSON document (an object or a list) or JSON Lines, as a list of records."""
    try:
        doc = json.loads(text)
        return doc if isinstance(doc, list) else [doc]
    except json.JSONDecodeError:
        pass
    records = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise TraceFormatError(f"{path}:{n}: not JSON: {e.msg}") from None
    return records


def _otlp_calls(requests: list[Any]) -> list[RecordedCall]:
    spans = [span for req in requests if isinstance(req, dict)
             for rs in req.get("resourceSpans") or ()
             for ss in rs.get("scopeSpans") or () for span in ss.get("spans") or ()]
    graph_of_trace = {}
    for span in spans:
        attrs = _otlp_attributes(span)
        if attrs.get("gen_ai.operation.name") == "invoke_workflow":
            graph_of_trace[_otlp_id(span.get("traceId"))] = attrs.get("gen_ai.workflow.name")
    calls, seen = [], set()
    for span in spans:
        attrs = _otlp_attributes(span)
        if (attrs.get("gen_ai.operation.name") not in _CALL_OPERATIONS
                or span.get("kind") in _SERVER_KIND
                or "gen_ai.usage.output_tokens" not in attrs):
            continue
        call_id = attrs.get("autellix.call.id") or _otlp_id(span.get("spanId"))
        if call_id in seen:
            continue
        seen.add(call_id)
        run = _otlp_id(span.get("traceId"))
        thread = attrs.get("gen_ai.conversation.id")
        graph = graph_of_trace.get(run)
        program = (attrs.get("autellix.program.id")
                   or (f"{graph}:{thread}" if thread is not None else run))
        calls.append(RecordedCall(
            str(program), run, int(span["startTimeUnixNano"]) / 1e9,
            int(span["endTimeUnixNano"]) / 1e9, int(attrs.get("gen_ai.usage.input_tokens", 0)),
            int(attrs["gen_ai.usage.output_tokens"]), graph))
    return calls


def _otlp_attributes(span: dict) -> dict[str, Any]:
    out = {}
    for a in span.get("attributes") or ():
        value = a.get("value") or {}
        for kind in ("stringValue", "intValue", "doubleValue", "boolValue"):
            if kind in value:
                v = value[kind]
                out[a["key"]] = int(v) if kind == "intValue" else v  # int64 is a string
                break
    return out


def _otlp_id(value: str | None) -> str:
    """A trace or span id as hex: OTLP JSON writes hex; protobuf's JSON mapping, base64."""
    if not value:
        return ""
    try:
        int(value, 16)
        return value.lower()
    except ValueError:
        return base64.b64decode(value).hex()


def _langsmith_calls(runs: list[Any]) -> list[RecordedCall]:
    calls = []
    for run in runs:
        if not isinstance(run, dict) or run.get("run_type") != "llm" or not run.get("end_time"):
            continue
        usage = _langsmith_usage(run)
        if usage is None:
            continue
        metadata = (run.get("extra") or {}).get("metadata") or {}
        trace_id = str(run.get("trace_id") or run.get("id"))
        thread = metadata.get("thread_id")
        graph = metadata.get("assistant_id") or metadata.get("graph_id")
        program = (metadata.get("autellix_program_id")
                   or (f"{graph or 'graph'}:{thread}" if thread is not None else trace_id))
        calls.append(RecordedCall(str(program), trace_id, _seconds(run["start_time"]),
                                  _seconds(run["end_time"]), *usage, graph))
    return calls


def _langsmith_usage(run: dict) -> tuple[int, int] | None:
    if run.get("completion_tokens") is not None:
        return int(run.get("prompt_tokens") or 0), int(run["completion_tokens"])
    outputs = run.get("outputs") or {}
    token_usage = (outputs.get("llm_output") or {}).get("token_usage") or {}
    if "completion_tokens" in token_usage:
        return int(token_usage.get("prompt_tokens", 0)), int(token_usage["completion_tokens"])
    for generation in (g for gs in outputs.get("generations") or () for g in gs):
        message = generation.get("message") or {}
        meta = (message.get("kwargs") or message).get("usage_metadata")
        if meta:
            return int(meta.get("input_tokens", 0)), int(meta.get("output_tokens", 0))
    return None


def _seconds(stamp: str | float) -> float:
    if isinstance(stamp, int | float):
        return float(stamp)
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
