"""The suites as LangGraph graphs on ``AutellixChatModel``.

One graph shape runs every suite: a ``plan`` node walks the program's stages; a stage
of one call is a single ``call`` task, a stage of several (LATS expansions and
reflections) fans out with ``Send``; a ``tool`` node sleeps the tool latency between
ReAct steps. Conversation history accumulates in the state, so later calls carry the
earlier turns (served largely from vLLM's prefix cache), as chat and ReAct programs do.

In benchmark mode each call's output length is enforced (``max_tokens`` with EOS
ignored), so the suite's distributions hold whatever the model says; prompts are
synthetic text of the specified token counts.
"""

from __future__ import annotations

import asyncio
import operator
import random
import zlib
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from autellix_workloads.spec import CallSpec, ProgramSpec

_WORDS = (
    "the plan needs one more step so check each result and keep what works then try "
    "again with a short answer about the city weather search list find value tool call"
).split()


def filler_text(num_tokens: int, seed: int) -> str:
    """Text of roughly ``num_tokens`` tokens (common words are one token each)."""
    rng = random.Random(seed)
    return " ".join(rng.choice(_WORDS) for _ in range(max(1, num_tokens)))


class ProgramState(TypedDict):
    spec: ProgramSpec
    stage: int
    history: Annotated[list[BaseMessage], operator.add]
    tokens: Annotated[int, operator.add]


def build_graph(llm: Any):
    """Compile the program graph for ``llm`` (an ``AutellixChatModel``)."""

    def plan(state: ProgramState):
        return {}

    def route(state: ProgramState):
        spec, i = state["spec"], state["stage"]
        if i >= len(spec.stages):
            return END
        return [Send("call", {"spec": spec, "stage": i, "index": k, "history": state["history"]})
                for k in range(len(spec.stages[i]))]

    async def call(task: dict):
        spec: ProgramSpec = task["spec"]
        i, k = task["stage"], task["index"]
        c: CallSpec = spec.stages[i][k]
        messages = list(task["history"])
        if spec.system_tokens and not messages:
            system_seed = zlib.crc32(spec.suite.encode())
            messages = [SystemMessage(filler_text(spec.system_tokens, seed=system_seed))]
        prompt_seed = zlib.crc32(f"{spec.program_id}/{i}/{k}".encode())
        prompt = HumanMessage(filler_text(c.prompt_tokens, seed=prompt_seed))
        # The program's remaining output, this stage's included: only the clairvoyant
        # srpt yardstick reads it (docs/benchmarks.md).
        remaining = sum(x.output_tokens for stage in spec.stages[i:] for x in stage)
        reply = await llm.ainvoke([*messages, prompt], max_tokens=c.output_tokens,
                                  ignore_eos=True, remaining_work=remaining)
        # Sequential stages carry the conversation on; parallel branches do not.
        keep = [prompt, AIMessage(reply.content)] if len(spec.stages[i]) == 1 else []
        new_history = [messages[0]] if messages and not task["history"] else []
        out_tokens = (reply.usage_metadata or {}).get("output_tokens", 0)
        return {"history": new_history + keep, "tokens": out_tokens}

    async def tool(state: ProgramState):
        spec = state["spec"]
        if spec.tool_latency_s:
            await asyncio.sleep(spec.tool_latency_s)
        return {"stage": state["stage"] + 1}

    g = StateGraph(ProgramState)
    g.add_node("plan", plan)
    g.add_node("call", call)
    g.add_node("tool", tool)
    g.add_edge(START, "plan")
    g.add_conditional_edges("plan", route, ["call", END])
    g.add_edge("call", "tool")
    g.add_edge("tool", "plan")
    return g.compile()


def initial_state(spec: ProgramSpec) -> ProgramState:
    return {"spec": spec, "stage": 0, "history": [], "tokens": 0}


def run_config(spec: ProgramSpec) -> dict:
    """Invoke config: the program id, and room for three supersteps per stage."""
    return {"metadata": {"autellix_program_id": spec.program_id},
            "recursion_limit": 3 * len(spec.stages) + 10}
