"""A chatbot with a checkpointer: each user turn is a run on a LangGraph thread, and the
thread is one program for the engine across the turns.

The program's attained service grows turn by turn (a long conversation gives way to
fresh ones), and with ``kv_retention`` the conversation's KV stays cached through the
user's think time, so the next turn does not recompute it. ``end_thread`` ends the
program (or the engine's idle timeout does). Run it: ``python examples/chatbot_threads.py``.
"""

import os
from typing import Annotated, TypedDict

from langchain_core.messages import AnyMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, StateGraph
from langgraph.graph.message import add_messages

from autellix_lg import AutellixChatModel, end_thread

llm = AutellixChatModel(model=os.environ.get("AUTELLIX_MODEL", "smollm2"), temperature=0,
                        max_tokens=48, engine_config={"kv_retention": True})


class Chat(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


#: A long system prompt, as real assistants have: the conversation fills KV blocks that
#: the engine can keep (vLLM caches whole blocks: 128 tokens on a CPU, 16 on a GPU).
SYSTEM = ("You are a concise geography assistant. " * 8 + "Answer in one sentence, name "
          "the places you talk about, and never invent facts. " * 4)


def reply(state: Chat) -> Chat:
    return {"messages": [llm.invoke([("system", SYSTEM), *state["messages"]])]}


builder = StateGraph(Chat)
builder.add_node("reply", reply)
builder.add_edge(START, "reply")
chatbot = builder.compile(checkpointer=InMemorySaver(), name="chatbot")

config = {"configurable": {"thread_id": "user-42"}}
for question in ("Hi! What is the capital of France?", "And of Italy?",
                 "Which of the two is larger?"):
    answer = chatbot.invoke({"messages": [("user", question)]}, config)
    program = llm.embedded_engine().program_stats("chatbot:user-42")
    print(f"user: {question}\nbot: {answer['messages'][-1].content}")
    print(f"  [program chatbot:user-42: {program.tally.calls} calls, attained service "
          f"{program.service:.1f}, {program.tally.cached_tokens} prompt tokens cached, "
          f"{program.tally.retained_tokens} of them kept for it between turns]")
print("ended:", end_thread("user-42"))
