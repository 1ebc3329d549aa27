"""``ChatOpenAI`` against a stock ``vllm serve`` running our scheduler, with each
LangGraph thread as one program.

Start the server first (any OpenAI-compatible vLLM server with our scheduler)::

    vllm serve <model> --scheduler-cls autellix_engine.AutellixScheduler   # GPU:
    #   ... --scheduler-cls autellix_engine.AutellixAsyncScheduler
    autellix replica --model smollm2 --port 8100                           # the same, here

then ``AUTELLIX_BASE_URL=http://127.0.0.1:8100 python examples/chatopenai_vllm_serve.py``.
``with_program_session`` names the run's program (here the thread ``demo-thread``) in
every call as vLLM's ``session_id``, which our scheduler reads as the program.
"""

import os
from typing import Annotated, TypedDict

from langchain_core.messages import AnyMessage
from langchain_openai import ChatOpenAI
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, StateGraph
from langgraph.graph.message import add_messages

from autellix_lg import with_program_session

base_url = os.environ.get("AUTELLIX_BASE_URL", "http://127.0.0.1:8100")
model = os.environ.get("AUTELLIX_MODEL", "smollm2")
llm = with_program_session(ChatOpenAI(base_url=f"{base_url}/v1", api_key="EMPTY",
                                      model=model, max_tokens=32, temperature=0))


class Chat(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def reply(state: Chat) -> Chat:
    return {"messages": [llm.invoke(state["messages"])]}


builder = StateGraph(Chat)
builder.add_node("reply", reply)
builder.add_edge(START, "reply")
chat = builder.compile(checkpointer=InMemorySaver(), name="chat")

config = {"configurable": {"thread_id": "demo-thread"}}
for question in ("Name a fruit.", "Name another one."):
    out = chat.invoke({"messages": [("user", question)]}, config)
    print(f"user: {question}\nbot: {out['messages'][-1].content}")
