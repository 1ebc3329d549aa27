"""A tree search with ``Send`` fan-out: the parallel branches of one run are the threads
(in the paper's sense: parallel calls) of one program, and ATLAS ranks the program by
its critical path, not by the sum of its branches.

Run it: ``python examples/tree_search.py``.
"""

import operator
import os
from typing import Annotated, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from autellix_lg import AutellixChatModel

llm = AutellixChatModel(model=os.environ.get("AUTELLIX_MODEL", "smollm2"), policy="atlas",
                        temperature=0.7, max_tokens=32)


class Search(TypedDict):
    question: str
    candidates: Annotated[list[str], operator.add]


def expand(state: Search):
    return [Send("propose", {"question": state["question"], "angle": angle})
            for angle in ("history", "geography", "economy")]


def propose(task: dict):
    answer = llm.invoke(f"In one sentence, about {task['angle']}: {task['question']}")
    return {"candidates": [f"{task['angle']}: {answer.content}"]}


def pick(state: Search):
    best = max(state["candidates"], key=len)
    return {"candidates": [f"picked -> {best}"]}


builder = StateGraph(Search)
builder.add_node("propose", propose)
builder.add_node("pick", pick)
builder.add_conditional_edges(START, expand, ["propose"])
builder.add_edge("propose", "pick")
builder.add_edge("pick", END)
graph = builder.compile()

for line in graph.invoke({"question": "Why is Lyon important?", "candidates": []})[
        "candidates"]:
    print(line)
