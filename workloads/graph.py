"""The suites as LangGraph graphs on ``AutellixChatModel``.

ReAct and LATS programs are one run of the program graph: a ``plan`` node walks the
program's stages; a stage of one call is a single ``call`` task, a stage of several
(LATS expansions and reflections) fans out with ``Send``; a ``tool`` node sleeps the
tool latency between ReAct steps. A chat is what applications run: the ``chatbot``
graph with a checkpointer, one run per user turn on the conversation's thread (the
think time passes between runs). Conversation history accumulates in the state, so
later calls carry the earlier turns (served largely from vLLM's prefix cache).

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

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    trim_messages,
)
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
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


def build_graph(llm: Any, max_context: int | None = None):
    """Compile the program graph for ``llm`` (an ``AutellixChatModel``); a history
    longer than ``max_context`` allows is trimmed to its most recent turns."""

    def plan(state: ProgramState):
        return {}

    def route(state: ProgramState):
        spec, i = state["spec"], state["stage"]
        if i >= len(spec.stages):
            return END
        return [Send("call", {"spec": spec, "stage": i, "index": k, "history": state["history"]})
                for k in range(len(spec.stages[i]))]

    async def call(task: dict):
        return await _call(llm, task["spec"], task["stage"], task["index"], task["history"],
                           max_context)

    async def tool(state: ProgramState):
        spec, following = state["spec"], state["stage"] + 1
        if following < len(spec.stages) and spec.gap_before(following):
            await asyncio.sleep(spec.gap_before(following))
        return {"stage": following}

    g = StateGraph(ProgramState)
    g.add_node("plan", plan)
    g.add_node("call", call)
    g.add_node("tool", tool)
    g.add_edge(START, "plan")
    g.add_conditional_edges("plan", route, ["call", END])
    g.add_edge("call", "tool")
    g.add_edge("tool", "plan")
    return g.compile()


#: Chat-template tokens per message (SmolLM2's template adds about 6).
TEMPLATE_TOKENS = 6


def filler_tokens(messages: list[BaseMessage]) -> int:
    """Tokens of a conversation: a model's reply as many as it generated (its usage),
    filler text a word each, and the chat template's per message."""
    return sum(_tokens(m) + TEMPLATE_TOKENS for m in messages)


def _tokens(message: BaseMessage) -> int:
    words = len(str(message.content).split())
    usage = getattr(message, "usage_metadata", None) or {}
    return max(words, usage.get("output_tokens", 0))


def trimmed(history: list[BaseMessage], budget: int) -> list[BaseMessage]:
    """``history`` within ``budget`` tokens: its system message and its most recent
    turns, as a chat application keeps a long conversation in the model's context."""
    return trim_messages(history, max_tokens=budget, token_counter=filler_tokens,
                         strategy="last", include_system=True, start_on="human")


async def _call(llm: Any, spec: ProgramSpec, i: int, k: int, history: list[BaseMessage],
                max_context: int | None = None) -> dict:
    """Call ``k`` of stage ``i``: its prompt after ``history``; the state update."""
    c: CallSpec = spec.stages[i][k]
    messages = list(history)
    if spec.system_tokens and not messages:
        system_seed = zlib.crc32(spec.suite.encode())
        messages = [SystemMessage(filler_text(spec.system_tokens, seed=system_seed))]
    # Seeded by the arrival too: each run (rate) of a benchmark asks new questions, so
    # no run finds an earlier run's conversations in the prefix cache.
    prompt_seed = zlib.crc32(f"{spec.program_id}/{spec.arrival_s}/{i}/{k}".encode())
    prompt = HumanMessage(filler_text(c.prompt_tokens, seed=prompt_seed))
    if max_context is not None:
        # A model's reply has more tokens than words: a sixth of slack keeps the call
        # within the model's context.
        room = max_context - c.prompt_tokens - c.output_tokens - 2 * TEMPLATE_TOKENS
        messages = trimmed(messages, max(0, room * 5 // 6))
    # The program's remaining output, this stage's included: only the clairvoyant
    # srpt yardstick reads it (docs/benchmarks.md).
    remaining = sum(x.output_tokens for stage in spec.stages[i:] for x in stage)
    reply = await llm.ainvoke([*messages, prompt], max_tokens=c.output_tokens,
                              ignore_eos=True, remaining_work=remaining)
    # Sequential stages carry the conversation on; parallel branches do not.
    answer = AIMessage(reply.content, usage_metadata=reply.usage_metadata)
    keep = [prompt, answer] if len(spec.stages[i]) == 1 else []
    new_history = [messages[0]] if messages and not history else []
    out_tokens = (reply.usage_metadata or {}).get("output_tokens", 0)
    return {"history": new_history + keep, "tokens": out_tokens}


class TurnState(TypedDict):
    history: Annotated[list[BaseMessage], operator.add]
    tokens: Annotated[int, operator.add]


#: The chat graph's name: a thread's program is ``"chatbot:<thread id>"``.
CHAT_GRAPH = "chatbot"
#: Config key of the turn a run answers: (program, stage). Configurable values are not
#: checkpointed, so the checkpoint holds messages only.
TURN_KEY = "autellix_bench_turn"


def build_chat_graph(llm: Any, max_context: int | None = None):
    """The ``chatbot`` graph: one run answers one turn; the conversation is the
    thread's checkpointed state (trimmed to ``max_context`` in each prompt)."""

    async def reply(state: TurnState, config: RunnableConfig):
        spec, stage = config["configurable"][TURN_KEY]
        return await _call(llm, spec, stage, 0, state.get("history", []), max_context)

    g = StateGraph(TurnState)
    g.add_node("reply", reply)
    g.add_edge(START, "reply")
    return g.compile(checkpointer=InMemorySaver(), name=CHAT_GRAPH)


def turn_input() -> TurnState:
    """A turn's run input: nothing new (the conversation so far is in the thread's
    checkpoint; the turn, in the config)."""
    return {"history": [], "tokens": 0}


def turn_config(spec: ProgramSpec, stage: int, scope: str) -> dict:
    """A turn's run config: the conversation's thread; under ``scope="run"`` each turn
    is a program of its own (``"<program id>/<turn>"``)."""
    config: dict = {"configurable": {"thread_id": spec.program_id, TURN_KEY: (spec, stage)}}
    if scope == "run":
        config["metadata"] = {"autellix_program_id": turn_program(spec, stage)}
    return config


def turn_program(spec: ProgramSpec, stage: int) -> str:
    return f"{spec.program_id}/{stage}"


def initial_state(spec: ProgramSpec) -> ProgramState:
    return {"spec": spec, "stage": 0, "history": [], "tokens": 0}


def run_config(spec: ProgramSpec) -> dict:
    """Invoke config: the program id, and room for three supersteps per stage."""
    return {"metadata": {"autellix_program_id": spec.program_id},
            "recursion_limit": 3 * len(spec.stages) + 10}
