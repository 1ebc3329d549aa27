"""Program identity for other chat models: ``ChatOpenAI`` against ``autellix serve`` or a
stock ``vllm serve --scheduler-cls autellix_engine.AutellixScheduler``.

A static ``default_headers`` cannot name a LangGraph thread's program (it differs per
run). :func:`with_program_session` wraps a chat model so that each call carries the
program of the run it is made in, as vLLM's session identity: the ``session_id`` body
field and the ``X-Session-ID`` header, which both servers read as the program. The
program is the one ``AutellixChatModel`` would use (``autellix_lg.programs``): the
LangGraph thread (``"<graph>:<thread id>"``), an explicit ``autellix_program_id``, or
the run.

Example::

    llm = with_program_session(ChatOpenAI(base_url="http://localhost:8000/v1",
                                          api_key="EMPTY", model="smollm2"))
    graph.invoke(state, {"configurable": {"thread_id": "user-42"}})

Bind tools before wrapping (``with_program_session(llm.bind_tools(tools))``).
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import BaseCallbackManager
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda, ensure_config

from autellix_lg import programs

SESSION_HEADER = "X-Session-ID"


def current_program(config: RunnableConfig | None = None) -> str | None:
    """The program of the run a call is made in (None outside any run)."""
    config = ensure_config(config)
    callbacks = config.get("callbacks")
    enclosing = callbacks.parent_run_id if isinstance(callbacks, BaseCallbackManager) else None
    metadata = config.get("metadata") or {}
    return programs.handler().call_context(
        enclosing, metadata.get(programs.PROGRAM_ID_KEY)).program_id


def session_kwargs(program_id: str | None) -> dict[str, Any]:
    """Call keywords of an OpenAI-client chat model that name ``program_id``."""
    if program_id is None:
        return {}
    return {"extra_body": {"session_id": program_id},
            "extra_headers": {SESSION_HEADER: program_id}}


def with_program_session(model: Runnable) -> Runnable:
    """``model`` (``ChatOpenAI`` or another OpenAI-client chat model), with each call
    naming its run's program as vLLM's session id."""
    programs.install()

    def call(messages: Any, config: RunnableConfig) -> Any:
        return model.invoke(messages, config, **session_kwargs(current_program(config)))

    async def acall(messages: Any, config: RunnableConfig) -> Any:
        return await model.ainvoke(messages, config,
                                   **session_kwargs(current_program(config)))

    return RunnableLambda(call, afunc=acall, name="with_program_session")
