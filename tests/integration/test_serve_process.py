"""``autellix serve`` and ``autellix replica`` as a user runs them: separate processes.

One ``autellix serve --policy plas`` with ``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at
an OTLP/HTTP collector on loopback (in this test process) serves the module:

- traces: the client's ``chat`` span and the server's span of one call are in one
  trace, parented client -> server, with ``http.*``, ``gen_ai.*`` and the same call
  id; the client span carries time to first token and the policy the server ran;
  the server's engine start is a span of its own;
- a remote LangGraph run whose calls come from two model objects ends its program
  once;
- last, SIGTERM under load: every call ends (finished, or an error event), the
  process exits within a bound, and no engine process is left (checked by PID).

The ChatOpenAI example's two turns are one program at the server. For ``autellix
replica``: its vLLM spans reach the collector, and the same SIGTERM check.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.integration.conftest import wait_until

ENGINE_FLAGS = ["--model", "tiny", "--max-num-seqs", "4", "--max-model-len", "1024",
                "--kv-cache-memory-bytes", str(256 << 20)]
START_S = 300
#: The bound on a stop: the calls' grace (--shutdown-timeout 3) plus closing engines.
STOP_S = 60


class Collector:
    """An OTLP/HTTP (protobuf) trace receiver on loopback, keeping every span."""

    def __init__(self) -> None:
        self.spans: list = []  # (resource service name, span)
        spans = self.spans

        class Receiver(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                for rs in ExportTraceServiceRequest.FromString(body).resource_spans:
                    service = next((a.value.string_value for a in rs.resource.attributes
                                    if a.key == "service.name"), "")
                    for ss in rs.scope_spans:
                        spans.extend((service, span) for span in ss.spans)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def named(self, name: str) -> list:
        return [s for _, s in list(self.spans) if s.name == name]


def attrs(span) -> dict:
    out = {}
    for a in span.attributes:
        v = a.value
        out[a.key] = next(getattr(v, f) for f in ("string_value", "int_value", "double_value",
                                                  "bool_value") if v.HasField(f)) \
            if not v.HasField("array_value") else [x.string_value for x in v.array_value.values]
    return out


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], port: int, env: dict[str, str] | None = None) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    proc = subprocess.Popen([sys.executable, "-m", "autellix_workloads.cli", *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise AssertionError("the server did not start")


def _descendants(pid: int) -> list[int]:
    return [p.pid for p in psutil.Process(pid).children(recursive=True)]


def _alive(pids: list[int], timeout_s: float) -> list[int]:
    """PIDs still alive (zombies count as gone) after at most ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        alive = [p for p in pids if psutil.pid_exists(p)
                 and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)


@pytest.fixture(scope="module")
def collector():
    c = Collector()
    yield c
    c.server.shutdown()


@pytest.fixture(scope="module")
def served(collector):
    port = _port()
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    proc = _start(["serve", *ENGINE_FLAGS, "--policy", "plas", "--port", str(port),
                   "--shutdown-timeout", "3"], port, env)
    yield proc, f"http://127.0.0.1:{port}"
    if proc.poll() is None:
        proc.kill()


async def test_client_and_server_spans_of_a_remote_call_are_one_trace(served, collector,
                                                                       span_exporter):
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from autellix_lg import AutellixChatModel

    _, url = served
    span_exporter.extra.append(SimpleSpanProcessor(
        OTLPSpanExporter(endpoint=f"{collector.url}/v1/traces")))
    try:
        llm = AutellixChatModel(model="tiny", base_url=url, max_tokens=4)  # policy: atlas
        await llm.ainvoke("Hi")
    finally:
        span_exporter.extra.clear()
    await wait_until(lambda: collector.named("POST /v1/chat/completions"), 30,
                     "the server's span")
    client, server = collector.named("chat tiny")[-1], collector.named(
        "POST /v1/chat/completions")[-1]
    assert server.trace_id == client.trace_id and server.parent_span_id == client.span_id
    c, s = attrs(client), attrs(server)
    assert s["http.request.method"] == "POST" and s["http.response.status_code"] == 200
    assert s["gen_ai.operation.name"] == "chat" and s["gen_ai.request.model"] == "tiny"
    assert s["gen_ai.usage.output_tokens"] == 4 and s["autellix.policy"] == "plas"
    assert c["autellix.call.id"] == s["autellix.call.id"]
    assert c["autellix.policy"] == "plas"  # what the server ran, not the model's default
    assert c["autellix.time_to_first_token_s"] > 0
    assert {service for service, span in collector.spans
            if span.name == "POST /v1/chat/completions"} == {"autellix-serve"}
    assert collector.named("autellix.engine.start"), "the server's engine start is a span"


def test_a_remote_graph_run_ends_its_program_once(served, monkeypatch):
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph

    from autellix_lg import AutellixChatModel
    from autellix_lg.clients import RemoteClient

    _, url = served
    ends: list[tuple[str, str]] = []
    original = RemoteClient._program_call

    def counted(self, method, program_id):
        ends.append((method, program_id))
        return original(self, method, program_id)

    monkeypatch.setattr(RemoteClient, "_program_call", counted)

    class State(TypedDict):
        text: str

    first = AutellixChatModel(model="tiny", base_url=url, max_tokens=2)
    second = AutellixChatModel(model="tiny", base_url=url, max_tokens=2)
    graph = StateGraph(State)
    graph.add_node("a", lambda s: {"text": first.invoke(s["text"]).content})
    graph.add_node("b", lambda s: {"text": second.invoke("again").content})
    graph.add_edge(START, "a")
    graph.add_edge("a", "b")
    graph.add_edge("b", END)
    graph.compile().invoke({"text": "hi"})  # no thread: the run is the program
    deadline = time.monotonic() + 30
    while not ends and time.monotonic() < deadline:  # sent in the background
        time.sleep(0.05)
    time.sleep(0.5)  # room for a second DELETE, if one were (wrongly) queued
    assert [m for m, _ in ends] == ["DELETE"], ends
    status = httpx.get(f"{url}/v1/programs/{ends[0][1]}", timeout=10).status_code
    assert status == 404  # ended


def test_chatopenai_turns_of_one_thread_are_one_program_at_the_server(served):
    """``examples/chatopenai_vllm_serve.py`` against ``autellix serve``: with
    ``with_program_session``, both turns of the thread reach the server as one program
    (vLLM's session id), which the program API then shows with both calls."""
    from tests.integration.test_examples import run_example

    _, url = served
    out = run_example("chatopenai_vllm_serve.py", AUTELLIX_BASE_URL=url, AUTELLIX_MODEL="tiny")
    assert out.count("bot: ") == 2, out
    program = httpx.get(f"{url}/v1/programs/chat:demo-thread", timeout=10)
    assert program.status_code == 200, program.text
    assert program.json()["num_calls"] == 2 and program.json()["service"] > 0
    assert httpx.delete(f"{url}/v1/programs/chat:demo-thread", timeout=10).status_code == 200


def _stream(url: str, out: list[str]) -> None:
    body = {"model": "tiny", "prompt": "tell a long story", "max_tokens": 900,
            "ignore_eos": True, "stream": True}
    try:
        with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=120) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    out.append(line[6:])
    except httpx.HTTPError as e:
        out.append(f"transport error: {e!r}")


def test_sigterm_under_load_stops_serve_and_every_engine_process(served):
    proc, url = served
    engines = _descendants(proc.pid)
    assert engines, "the engine core runs in child processes"
    streams: list[list[str]] = [[] for _ in range(3)]
    threads = [threading.Thread(target=_stream, args=(url, s)) for s in streams]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    while not all(streams) and time.monotonic() < deadline:  # every call is running
        time.sleep(0.1)
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=STOP_S) == 0, proc.stdout.read()[-3000:]
    assert time.monotonic() - began < STOP_S
    for t in threads:
        t.join(timeout=30)
    assert _alive(engines, 10) == [], "engine processes outlived the server"
    for events in streams:
        # Each call ended, never silently: it finished, or got an error event.
        assert len(events) >= 2 and events[-1] == "[DONE]", events[-3:]
        tail = json.loads(events[-2])
        assert "error" in tail or tail["choices"][0]["finish_reason"] == "length", tail
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/health", timeout=2)


async def test_a_replica_exports_its_spans_and_sigterm_stops_its_engine_processes(collector):
    """``autellix replica`` with ``OTEL_EXPORTER_OTLP_ENDPOINT``: vLLM's own request
    spans reach the collector as ``autellix-replica``, with no code of the user's;
    then SIGTERM stops it and every engine process."""
    port = _port()
    proc = _start(["replica", *ENGINE_FLAGS, "--port", str(port)], port,
                  {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "100"})
    try:
        engines = _descendants(proc.pid)
        assert len(engines) >= 2  # vllm serve and its engine core
        done = httpx.post(f"http://127.0.0.1:{port}/v1/completions", timeout=60, json={
            "model": "tiny", "prompt": "Hi", "max_tokens": 2})
        assert done.status_code == 200, done.text

        def request_spans():  # vLLM's span of a request, with its usage
            return [span for service, span in list(collector.spans)
                    if service == "autellix-replica" and span.name == "llm_request"]

        await wait_until(request_spans, 30, "the replica's request span")
        assert [attrs(s)["gen_ai.usage.completion_tokens"] for s in request_spans()] == [2]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=STOP_S) == 0, proc.stdout.read()[-3000:]
        assert _alive(engines, 10) == []
    finally:
        if proc.poll() is None:
            proc.kill()


def test_serve_with_vllm_serves_flags_runs_programs_and_stops_on_sigterm():
    """`autellix serve` with `vllm serve`'s own tool flags: the official client's chat
    and responses calls of one session are one program; a SIGTERM stops the server and
    its engine processes."""
    import openai

    template = Path(__file__).parents[1] / "data" / "hermes_tools.jinja"
    port = _port()
    proc = _start(["serve", *ENGINE_FLAGS, "--port", str(port), "--chat-template",
                   str(template), "--enable-auto-tool-choice", "--tool-call-parser", "hermes",
                   "--shutdown-timeout", "3"], port)
    try:
        url = f"http://127.0.0.1:{port}"
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        session = {"X-Session-ID": "s-1"}
        client.chat.completions.create(model="tiny", max_tokens=4, extra_headers=session,
                                       messages=[{"role": "user", "content": "hi"}])
        client.responses.create(model="tiny", input="hi", max_output_tokens=4,
                                extra_headers=session)
        assert httpx.get(f"{url}/v1/programs/s-1").json()["num_calls"] == 2
        assert httpx.get(f"{url}/version").status_code == 200
        engines = _descendants(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=STOP_S) == 0, proc.stdout.read()[-3000:]
        assert _alive(engines, 10) == [], "engine processes outlived the server"
    finally:
        if proc.poll() is None:
            proc.kill()
