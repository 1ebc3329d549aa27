"""A chatbot graph for LangGraph Server. Each user turn is a run on a thread; the thread
is one program for the engine (its service accumulates, its KV is retained between
turns). A message starting with "confirm" makes the graph ask first (``interrupt``);
the answer comes back as ``Command(resume=...)``, a new run of the same program.

Compiled without a checkpointer: the server brings its own (``checkpointer.py``).
"""

from typing import Annotated, TypedDict

from langchain_core.messages import AnyMessage, HumanMessage
from langgraph.graph import START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import interrupt
from shared import llm


class Chat(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


async def reply(state: Chat) -> Chat:
    messages = state["messages"]
    if str(messages[-1].content).lower().startswith("confirm"):
        answer = interrupt({"question": "Are you sure?"})
        messages = [*messages, HumanMessage(str(answer))]
    return {"messages": [await llm.ainvoke(messages)]}


builder = StateGraph(Chat)
builder.add_node("reply", reply)
builder.add_edge(START, "reply")
graph = builder.compile()
