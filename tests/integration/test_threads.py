"""A LangGraph conversation thread on a real engine: one program across turns.

The engine (``tiny``, KV retention on, a short idle timeout) sees every turn of a
thread as a call of the same program: attained service accumulates, the second turn
reuses the first turn's retained KV, and the program ends by ``end_thread`` or by the
idle timeout, freeing what was retained.
"""

from __future__ import annotations

import uuid
from typing import Annotated, TypedDict

import pytest
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Command, interrupt

from autellix_engine import AutellixEngine, EngineConfig, PolicyConfig
from autellix_lg import AutellixChatModel, end_thread
from tests.integration.conftest import TEST_ENGINE, wait_until

HISTORY = " ".join(["the tool returned a long list of cities and their weather"] * 40)
IDLE_S = 8.0  # the engine's idle timeout here (program_ttl_s)


class Chat(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


@pytest.fixture(scope="module")
async def engine():
    eng = AutellixEngine(EngineConfig(
        **TEST_ENGINE, kv_retention=True, program_gc_interval_s=0.5,
        policy_config=PolicyConfig(program_ttl_s=IDLE_S)))
    await eng.start()
    yield eng
    await eng.aclose()


def chatbot(engine, ask: bool = False):
    llm = AutellixChatModel(engine=engine, model="tiny", max_tokens=8, temperature=0.0)

    async def reply(state: Chat):
        if ask and len(state["messages"]) > 2:
            extra = interrupt("anything to add?")
            state = {"messages": [*state["messages"], HumanMessage(extra)]}
        return {"messages": [await llm.ainvoke(state["messages"])]}

    g = StateGraph(Chat)
    g.add_node("reply", reply)
    g.add_edge(START, "reply")
    return g.compile(checkpointer=InMemorySaver(), name="chat")


def turn(text: str) -> dict:
    return {"messages": [HumanMessage(text)]}


async def test_every_turn_is_a_call_of_one_program_whose_service_accumulates(engine):
    graph, tid = chatbot(engine), uuid.uuid4().hex
    config = {"configurable": {"thread_id": tid}}
    pid = f"chat:{tid}"
    await graph.ainvoke(turn(HISTORY), config)
    first = engine.program_stats(pid)
    assert first is not None and first.tally.calls == 1  # still running after the run
    await graph.ainvoke(turn("and the next one?"), config)
    second = engine.program_stats(pid)
    assert second.tally.calls == 2 and second.service > first.service
    # The second turn's prompt (the whole conversation) found the first turn's KV.
    assert second.tally.retained_tokens > 0
    assert engine.replicas()[0].gauges.retained_device_blocks > 0
    assert end_thread(tid) == [pid]
    assert not engine.is_program_running(pid)
    await engine.generate("ok", max_tokens=1)  # carries the end notice to the replica
    assert engine.replicas()[0].gauges.retained_device_blocks == 0


async def test_an_interrupt_and_its_resume_stay_in_the_program(engine):
    graph, tid = chatbot(engine, ask=True), uuid.uuid4().hex
    config = {"configurable": {"thread_id": tid}}
    await graph.ainvoke(turn("hello"), config)
    await graph.ainvoke(turn("tell me more"), config)  # interrupts before calling
    assert graph.get_state(config).next == ("reply",)
    out = await graph.ainvoke(Command(resume="please"), config)
    assert isinstance(out["messages"][-1], AIMessage)
    assert engine.program_stats(f"chat:{tid}").tally.calls == 2
    end_thread(tid)


async def test_an_idle_thread_ends_by_the_timeout_and_restarts_afresh(engine):
    graph, tid = chatbot(engine), uuid.uuid4().hex
    config = {"configurable": {"thread_id": tid}}
    pid = f"chat:{tid}"
    await graph.ainvoke(turn(HISTORY), config)
    assert engine.is_program_running(pid)
    await wait_until(lambda: not engine.is_program_running(pid), 4 * IDLE_S,
                     "the idle program collected")
    await engine.generate("ok", max_tokens=1)  # the end notice reaches the replica
    assert engine.replicas()[0].gauges.retained_device_blocks == 0
    await graph.ainvoke(turn("back again"), config)  # a new program, service from 0
    assert engine.program_stats(pid).tally.calls == 1
    end_thread(tid)


async def test_run_scope_makes_each_turn_a_program_of_its_own(engine):
    graph, tid = chatbot(engine), uuid.uuid4().hex
    config = {"configurable": {"thread_id": tid},
              "metadata": {"autellix_program_scope": "run"}}
    before = {p.program_id for p in engine.programs()}
    await graph.ainvoke(turn("a"), config)
    await graph.ainvoke(turn("b"), config)
    assert {p.program_id for p in engine.programs()} == before  # each ended with its run
    assert not engine.is_program_running(f"chat:{tid}")
