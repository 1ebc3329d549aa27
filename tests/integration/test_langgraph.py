"""AutellixChatModel inside LangGraph graphs: programs, threads, spans, cancellation."""

import asyncio
import http.server
import operator
import threading
from typing import Annotated, TypedDict

import pytest
from langchain_core.messages import AIMessageChunk, HumanMessage, ToolMessage
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from autellix_lg import PROGRAM_ID_KEY, AutellixChatModel, CallTimeoutError, EngineUnavailableError
from autellix_lg.programs import handler
from tests.integration.test_chat_model_standard import ENGINE

pytestmark = pytest.mark.usefixtures("span_exporter")


@pytest.fixture(scope="module")
def llm():
    model = AutellixChatModel(model="smollm2", engine_config=ENGINE, temperature=0.0,
                              max_tokens=12)
    model._resolve_client()  # start the shared engine outside the timed parts
    return model


def engine_of(model):
    return model._resolve_client().engine


class FanState(TypedDict):
    topics: list[str]
    answers: Annotated[list[str], operator.add]


def fan_out_graph(model, max_tokens=12):
    async def answer(state):
        msg = await model.ainvoke(f"One word about {state['topic']}.", max_tokens=max_tokens)
        return {"answers": [msg.content]}

    def fan(state):
        return [Send("answer", {"topic": t}) for t in state["topics"]]

    g = StateGraph(FanState)
    g.add_node("answer", answer)
    g.add_conditional_edges(START, fan, ["answer"])
    g.add_edge("answer", END)
    return g.compile()


async def watch_threads(eng, stop: asyncio.Event) -> dict[str, int]:
    """Most active threads seen per program while ``stop`` is unset."""
    seen: dict[str, int] = {}
    while not stop.is_set():
        for p in eng.programs():
            seen[p.program_id] = max(seen.get(p.program_id, 0), len(p.active_threads))
        await asyncio.sleep(0.005)
    return seen


def spans_of_trace(exporter, trace_id):
    return [s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id]


async def test_send_fan_out_is_one_program_with_n_threads_and_a_span_tree(llm, span_exporter):
    eng, n = engine_of(llm), 4
    span_exporter.clear()
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_threads(eng, stop))
    out = await fan_out_graph(llm).ainvoke({"topics": [f"t{i}" for i in range(n)], "answers": []})
    stop.set()
    seen = await watcher
    assert len(out["answers"]) == n
    # One program in the process table, with all N branches active at once.
    assert list(seen.values()) == [n]
    pid = next(iter(seen))
    finished = handler().finished[pid]
    assert finished.calls == n and len(finished.threads) == n and finished.error is None
    assert pid not in {p.program_id for p in eng.programs()}  # ended with the run

    roots = [s for s in span_exporter.get_finished_spans() if s.name == "invoke_workflow LangGraph"]
    assert len(roots) == 1
    root = roots[0]
    spans = spans_of_trace(span_exporter, root.context.trace_id)
    nodes = [s for s in spans if s.name == "answer"]
    chats = [s for s in spans if s.name == "chat smollm2"]
    assert len(nodes) == n and len(chats) == n
    assert all(s.parent.span_id == root.context.span_id for s in nodes)
    assert {c.parent.span_id for c in chats} == {s.context.span_id for s in nodes}
    assert root.attributes["autellix.program.id"] == pid
    for c in chats:
        a = c.attributes
        assert a["autellix.program.id"] == pid and a["autellix.policy"] == "atlas"
        assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "autellix"
        assert a["gen_ai.usage.output_tokens"] > 0 and a["autellix.queue.level"] >= 0
        for key in ("autellix.queue.wait_s", "autellix.preemptions", "autellix.engine.prefill_s",
                    "autellix.engine.decode_s", "autellix.thread.id"):
            assert key in a
        assert "gen_ai.input.messages" not in a and "gen_ai.output.messages" not in a
    assert len({c.attributes["autellix.thread.id"] for c in chats}) == n


async def test_spans_arrive_as_otlp_http_protobuf_at_a_loopback_receiver(llm, span_exporter):
    received: list[bytes] = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{server.server_port}/v1/traces")
    span_exporter.extra.append(SimpleSpanProcessor(exporter))
    try:
        await fan_out_graph(llm).ainvoke({"topics": ["a", "b"], "answers": []})
    finally:
        span_exporter.extra.clear()
        server.shutdown()
    names, trace_ids = [], set()
    for body in received:
        req = ExportTraceServiceRequest.FromString(body)
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    names.append(span.name)
                    trace_ids.add(span.trace_id)
    assert names.count("chat smollm2") == 2 and names.count("answer") == 2
    assert "invoke_workflow LangGraph" in names and len(trace_ids) == 1


async def test_explicit_program_id_in_config_metadata_overrides(llm, span_exporter):
    span_exporter.clear()
    await fan_out_graph(llm).ainvoke({"topics": ["x", "y"], "answers": []},
                                     config={"metadata": {PROGRAM_ID_KEY: "my-program"}})
    assert handler().finished["my-program"].calls == 2
    chats = [s for s in span_exporter.get_finished_spans() if s.name.startswith("chat")]
    assert {c.attributes["autellix.program.id"] for c in chats} == {"my-program"}


def test_sync_graph_and_stream_mode_messages(llm):
    def node(state):
        return {"answers": [llm.invoke("Say hi.").content]}

    g = StateGraph(FanState)
    g.add_node("talk", node)
    g.add_edge(START, "talk")
    g.add_edge("talk", END)
    chunks = [m for m, _meta in g.compile().stream({"topics": [], "answers": []},
                                                     stream_mode="messages")]
    ai = [c for c in chunks if isinstance(c, AIMessageChunk)]
    assert len(ai) >= 2
    assert sum(1 for c in ai if c.usage_metadata and c.usage_metadata["input_tokens"]) == 1


async def test_subgraph_and_batch_calls_belong_to_the_parent_program(llm):
    inner = StateGraph(FanState)

    async def inner_node(state):
        return {"answers": [(await llm.ainvoke("inner")).content]}

    inner.add_node("inner", inner_node)
    inner.add_edge(START, "inner")
    inner.add_edge("inner", END)
    subgraph = inner.compile()

    async def outer_node(state):
        outs = await llm.abatch(["b1", "b2", "b3"])
        return {"answers": [o.content for o in outs]}

    g = StateGraph(FanState)
    g.add_node("sub", subgraph)
    g.add_node("batch", outer_node)
    g.add_edge(START, "sub")
    g.add_edge("sub", "batch")
    g.add_edge("batch", END)
    await g.compile().ainvoke({"topics": [], "answers": []},
                              config={"metadata": {PROGRAM_ID_KEY: "nested"}})
    assert handler().finished["nested"].calls == 4


def get_weather(city: str) -> str:
    """Get the current weather for a city."""
    return f"It is sunny in {city}."


async def test_react_loop_with_tool_node_round_trips_a_tool_call(llm):
    from langgraph.graph import MessagesState
    from langgraph.prebuilt import ToolNode

    # Turn 1 must call the tool (tool_choice="any"); turn 2 answers from its result.
    # Which tool and arguments is guaranteed by guided decoding; the loop is LangGraph's.
    forced = llm.bind_tools([get_weather], tool_choice="any")

    async def agent(state):
        has_result = any(isinstance(m, ToolMessage) for m in state["messages"])
        model = llm if has_result else forced
        return {"messages": [await model.ainvoke(state["messages"], max_tokens=40)]}

    def route(state):
        return "tools" if state["messages"][-1].tool_calls else END

    g = StateGraph(MessagesState)
    g.add_node("agent", agent)
    g.add_node("tools", ToolNode([get_weather]))
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", route, ["tools", END])
    g.add_edge("tools", "agent")
    out = await g.compile().ainvoke(
        {"messages": [HumanMessage("What is the weather in Paris?")]},
        config={"metadata": {PROGRAM_ID_KEY: "react"}},
    )
    tool_msgs = [m for m in out["messages"] if isinstance(m, ToolMessage)]
    assert len(tool_msgs) == 1 and tool_msgs[0].content.startswith("It is sunny in")
    assert out["messages"][-1].content and not out["messages"][-1].tool_calls
    assert handler().finished["react"].calls == 2


async def test_create_agent_runs_as_one_program(llm):
    from langchain.agents import create_agent
    from langgraph.errors import GraphRecursionError

    # Under tool_choice="auto" whether the 135M model calls the tool or answers is its
    # choice (greedy output also varies with batch composition): both are valid runs.
    model = AutellixChatModel(model="smollm2", engine_config=ENGINE, temperature=0.0,
                              max_tokens=24)
    agent = create_agent(model, tools=[get_weather])
    try:
        out = await agent.ainvoke(
            {"messages": [HumanMessage("Use the get_weather tool for Paris.")]},
            config={"recursion_limit": 4, "metadata": {PROGRAM_ID_KEY: "agent"}},
        )
        assert out["messages"][-1].content  # it ended with an answer
    except GraphRecursionError:
        pass  # it kept calling the tool until the limit: the loop itself worked
    assert handler().finished["agent"].calls >= 1


async def test_cancelling_a_graph_run_aborts_its_engine_requests(llm):
    eng = engine_of(llm)
    long_llm = llm.bind(max_tokens=3000, ignore_eos=True)

    async def slow(state):
        await long_llm.ainvoke("Tell a very long story.")
        return {"answers": ["never"]}

    g = StateGraph(FanState)
    g.add_node("slow", slow)
    g.add_edge(START, "slow")
    g.add_edge("slow", END)
    task = asyncio.create_task(g.compile().ainvoke(
        {"topics": [], "answers": []}, config={"metadata": {PROGRAM_ID_KEY: "cancelled"}}))
    for _ in range(3000):
        if any(p.program_id == "cancelled" and p.active_threads for p in eng.programs()):
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(500):
        if eng.replica(0).llm.get_num_unfinished_requests() == 0:
            break
        await asyncio.sleep(0.01)
    assert eng.replica(0).llm.get_num_unfinished_requests() == 0
    assert "cancelled" not in {p.program_id for p in eng.programs()}
    assert handler().finished["cancelled"].error == "CancelledError"


async def test_timeout_is_a_clear_error_and_the_engine_keeps_serving(llm):
    impatient = AutellixChatModel(model="smollm2", engine_config=ENGINE, timeout=0.5,
                                  max_retries=0)
    with pytest.raises(CallTimeoutError):
        await impatient.ainvoke("Write an essay.", max_tokens=3000, ignore_eos=True)
    with pytest.raises(CallTimeoutError):
        await asyncio.to_thread(impatient.invoke, "Write an essay.", max_tokens=3000,
                                ignore_eos=True)
    eng = engine_of(llm)
    for _ in range(500):
        if eng.replica(0).llm.get_num_unfinished_requests() == 0:
            break
        await asyncio.sleep(0.01)
    assert eng.replica(0).llm.get_num_unfinished_requests() == 0
    assert (await llm.ainvoke("Still there?")).content


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_unreachable_remote_engine_is_a_clear_error(mode):
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    remote = AutellixChatModel(model="smollm2", base_url=f"http://127.0.0.1:{port}",
                               max_retries=1, timeout=5)
    with pytest.raises(EngineUnavailableError, match="Cannot reach"):
        if mode == "sync":
            await asyncio.to_thread(remote.invoke, "hi")
        else:
            await remote.ainvoke("hi")


async def test_an_engine_that_is_not_running_is_a_clear_error():
    from autellix_engine import AutellixEngine, EngineConfig

    eng = AutellixEngine(EngineConfig(model="no-such-model"))
    down = AutellixChatModel(model="smollm2", engine=eng, max_retries=0)
    with pytest.raises(EngineUnavailableError, match="not running"):
        await down.ainvoke("hi")


async def test_a_top_level_runnable_outside_a_graph_is_one_program(llm):
    import uuid

    from langchain_core.runnables import RunnableLambda

    run_id = uuid.uuid4()
    chain = RunnableLambda(lambda q: f"Answer briefly: {q}") | llm
    await chain.ainvoke("What is 2+2?", config={"run_id": run_id})
    summary = handler().finished[str(run_id)]
    assert summary.calls == 1 and summary.error is None
