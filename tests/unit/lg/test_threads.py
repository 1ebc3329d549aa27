"""A LangGraph thread is one program across its runs (real graphs, no engine).

Each graph's node records the program its calls would belong to
(``autellix_lg.current_program``: what ``AutellixChatModel`` and
``with_program_session`` use), and a stand-in engine client records program ends.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TypedDict

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from autellix_lg import (
    PROGRAM_ID_KEY,
    PROGRAM_SCOPE_KEY,
    current_program,
    end_thread,
    ending_programs,
)
from autellix_lg.programs import handler, install
from autellix_lg.sessions import session_kwargs


class State(TypedDict):
    text: str


class Engine:
    """Stands in for an engine client: the handler tells it which programs ended."""

    key = ("test", "engine")

    def __init__(self):
        self.ended: list[str] = []

    def end_program(self, program_id):
        self.ended.append(program_id)


@pytest.fixture
def engine():
    return Engine()


def chat_graph(engine, seen, name="chat", ask=False, checkpointer=None):
    def node(state, config):
        program = current_program(config)
        seen.append(program)
        callbacks = config["callbacks"]
        handler().record_call(callbacks.parent_run_id, engine, "node")
        if ask:
            answer = interrupt("more?")
            return {"text": f"{state['text']}+{answer}"}
        return {"text": state["text"] + "!"}

    g = StateGraph(State)
    g.add_node("node", node)
    g.add_edge(START, "node")
    g.add_edge("node", END)
    return g.compile(checkpointer=checkpointer or InMemorySaver(), name=name)


def setup_module():
    install()


def thread(tid):
    return {"configurable": {"thread_id": tid}}


def test_every_turn_of_a_thread_is_one_program_that_the_runs_do_not_end(engine):
    seen = []
    graph = chat_graph(engine, seen)
    tid = uuid.uuid4().hex
    for turn in ("hi", "and then?", "thanks"):
        graph.invoke({"text": turn}, thread(tid))
    assert seen == [f"chat:{tid}"] * 3
    assert engine.ended == []  # a run's end ends its calls, not the conversation
    assert end_thread(tid) == [f"chat:{tid}"] and engine.ended == [f"chat:{tid}"]
    assert end_thread(tid) == []  # once


def test_interrupt_and_resume_continue_the_same_program(engine):
    seen = []
    graph = chat_graph(engine, seen, ask=True)
    tid = uuid.uuid4().hex
    graph.invoke({"text": "q"}, thread(tid))
    assert graph.get_state(thread(tid)).next == ("node",)
    out = graph.invoke(Command(resume="yes"), thread(tid))
    assert out["text"] == "q+yes" and set(seen) == {f"chat:{tid}"} and engine.ended == []


def test_two_graphs_with_the_same_thread_id_are_two_programs(engine):
    seen = []
    tid = uuid.uuid4().hex
    chat_graph(engine, seen, name="support").invoke({"text": "a"}, thread(tid))
    chat_graph(engine, seen, name="sales").invoke({"text": "b"}, thread(tid))
    assert seen == [f"support:{tid}", f"sales:{tid}"]
    assert sorted(end_thread(tid, graph="sales")) == [f"sales:{tid}"]
    assert engine.ended == [f"sales:{tid}"]
    end_thread(tid)


def test_without_a_thread_or_in_run_scope_each_run_is_its_own_program(engine):
    seen = []
    graph = chat_graph(engine, seen)
    graph.invoke({"text": "a"}, {"configurable": {"thread_id": "t-run"},
                                 "metadata": {PROGRAM_SCOPE_KEY: "run"}})
    graph.invoke({"text": "b"}, {"configurable": {"thread_id": "t-run"},
                                 "metadata": {PROGRAM_SCOPE_KEY: "run"}})
    assert len(set(seen)) == 2 and all(":" not in p for p in seen)
    assert engine.ended == seen  # each ended with its run
    stateless = StateGraph(State)
    stateless.add_node("node", lambda s, config: seen.append(current_program(config)) or {})
    stateless.add_edge(START, "node")
    stateless.compile().invoke({"text": "c"})  # no checkpointer, no thread
    assert ":" not in seen[-1]


def test_an_explicit_program_id_wins(engine):
    seen = []
    chat_graph(engine, seen).invoke({"text": "a"}, {
        "configurable": {"thread_id": "t"}, "metadata": {PROGRAM_ID_KEY: "mine"}})
    assert seen == ["mine"]
    assert engine.ended == ["mine"]  # it ends with its run, thread or not


def test_deleting_the_thread_ends_its_program(engine):
    seen = []
    saver = ending_programs(InMemorySaver())
    graph = chat_graph(engine, seen, checkpointer=saver)
    tid = uuid.uuid4().hex
    asyncio.run(graph.ainvoke({"text": "a"}, thread(tid)))
    asyncio.run(saver.adelete_thread(tid))
    assert engine.ended == [f"chat:{tid}"]
    graph.invoke({"text": "b"}, thread(tid))
    saver.delete_thread(tid)
    assert engine.ended == [f"chat:{tid}"] * 2


def test_other_chat_models_get_the_program_as_vllm_session_id():
    assert session_kwargs("chat:t1") == {"extra_body": {"session_id": "chat:t1"},
                                         "extra_headers": {"X-Session-ID": "chat:t1"}}
    assert session_kwargs(None) == {}
