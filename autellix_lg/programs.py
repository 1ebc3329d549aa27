"""Programs from LangGraph's runs and threads.

``AutellixCallbackHandler`` sees every run start and end. A run without a known parent
is a *root*. Its program is, in order:

* ``metadata["autellix_program_id"]`` when the caller sets one;
* the LangGraph **thread** when the run has one (``config["configurable"]["thread_id"]``
  with a checkpointer, or any run of LangGraph Server): ``"<graph>:<thread id>"``,
  where the graph is the assistant id under LangGraph Server, else the graph's name
  (``compile(name=...)``), so two graphs with the same thread ids stay apart. Every
  turn of a conversation, and an ``interrupt()`` continued by ``Command(resume=...)``,
  is a new run of the same program: its attained service accumulates across them and
  its KV (``kv_retention``) is kept through the user's think time;
* otherwise the run itself (its run id).

``metadata["autellix_program_scope"] = "run"`` (or :func:`configure`) makes every root
run a program of its own, as if it had no thread.

Ends: a run-scoped program ends with its run. A thread's program does not end with a
run (only the run's calls do); it ends by :func:`end_thread`, when the thread is
deleted through a checkpointer wrapped by :func:`ending_programs`, or after
``PolicyConfig.program_ttl_s`` idle (the engine collects it; 600 s by default).

The handler also opens the program's spans: ``invoke_workflow {name}`` for the root,
one span per LangGraph node and per tool, each parented explicitly to its parent's span
(never by attaching OpenTelemetry context inside callbacks, which breaks under async
LangGraph: "Failed to detach context"). The chat model opens its ``chat {model}`` span
under the span of the run that encloses the call.

One handler serves the whole process: :func:`install` registers it with LangChain's
callback-manager configure hook, so every run gets it without the user passing it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.tracers.context import register_configure_hook
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from autellix_lg.telemetry import attributes as A

#: Config metadata key that sets a run's program id explicitly.
PROGRAM_ID_KEY = "autellix_program_id"
#: Config metadata key that chooses a run's program scope: "thread" (default) or "run".
PROGRAM_SCOPE_KEY = "autellix_program_scope"
SCOPES = ("thread", "run")
#: How many finished programs' summaries are kept (for inspection and tests).
FINISHED_MEMORY = 1000
#: Bound on the thread programs remembered (to end them on every engine that served
#: them): the least recently used are forgotten first (the engine still ends them by
#: its idle timeout).
MAX_THREAD_PROGRAMS = 100_000
#: Bound on tracked runs, against leaks from runs that never report an end.
MAX_RUNS = 100_000


@dataclass
class _Root:
    program_id: str
    span: Span | None
    clients: list[Any] = field(default_factory=list)  # EngineClients that served it
    calls: int = 0
    threads: set[str] = field(default_factory=set)
    thread: tuple[str, str] | None = None  # (graph, LangGraph thread id): outlives the run


@dataclass(frozen=True, slots=True)
class FinishedProgram:
    """Summary of a program whose root run ended."""

    program_id: str
    calls: int
    threads: tuple[str, ...]  # distinct thread ids its calls used
    error: str | None


@dataclass(frozen=True, slots=True)
class CallContext:
    """What the chat model learns about the call it is about to make."""

    program_id: str | None  # None: not inside a tracked run (a one-call program)
    parent_span: Span | None


class AutellixCallbackHandler(BaseCallbackHandler):
    """Maps runs to programs, ends programs, and opens program and node spans."""

    run_inline = True  # in the caller's thread and context, before the model runs
    raise_error = False

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._root_of: OrderedDict[UUID, UUID] = OrderedDict()  # run -> root run
        self._span_of: dict[UUID, Span] = {}  # run -> its own span, if it has one
        self._parent_of: dict[UUID, UUID] = {}
        self._roots: dict[UUID, _Root] = {}
        self.finished: OrderedDict[str, FinishedProgram] = OrderedDict()
        #: Thread programs -> the clients that served them (the engines to end them on).
        self._thread_programs: OrderedDict[str, list[Any]] = OrderedDict()
        self.default_scope = "thread"

    @property
    def tracer(self) -> trace.Tracer:
        return trace.get_tracer("autellix_lg")

    # -- run lifecycle ----------------------------------------------------------------
    def _on_start(self, run_id: UUID, parent_run_id: UUID | None, name: str, kind: str,
                  metadata: dict[str, Any] | None) -> None:
        metadata = metadata or {}
        with self._lock:
            root = self._root_of.get(parent_run_id) if parent_run_id else None
            if root is None:
                self._start_root(run_id, name, kind, metadata)
                return
            self._root_of[run_id] = root
            self._parent_of[run_id] = parent_run_id
            span = self._child_span(run_id, parent_run_id, name, kind, metadata)
            if span is not None:
                self._span_of[run_id] = span
            self._bound()

    def _start_root(self, run_id: UUID, name: str, kind: str, metadata: dict) -> None:
        explicit = metadata.get(PROGRAM_ID_KEY)
        # An explicit program ends with its run, thread or not.
        thread = None if explicit else self._thread_of(name, metadata)
        program_id = str(explicit or (f"{thread[0]}:{thread[1]}" if thread else run_id))
        span = None
        if kind != "llm":  # a bare chat model call gets only its own chat span
            attrs = {A.OPERATION: "invoke_workflow", A.WORKFLOW_NAME: name,
                     A.PROGRAM_ID: program_id}
            if metadata.get("thread_id") is not None:
                attrs[A.CONVERSATION_ID] = str(metadata["thread_id"])
            span = self.tracer.start_span(f"invoke_workflow {name}", attributes=attrs)
            self._span_of[run_id] = span
        self._root_of[run_id] = run_id
        self._roots[run_id] = _Root(program_id, span, thread=thread)
        if thread is not None:
            self._thread_programs.setdefault(program_id, [])
            self._thread_programs.move_to_end(program_id)
            while len(self._thread_programs) > MAX_THREAD_PROGRAMS:
                self._thread_programs.popitem(last=False)

    def _thread_of(self, name: str, metadata: dict) -> tuple[str, str] | None:
        """(graph, thread id) of a thread-scoped root run, or None (run scope)."""
        scope = metadata.get(PROGRAM_SCOPE_KEY, self.default_scope)
        thread_id = metadata.get("thread_id")
        if scope != "thread" or thread_id in (None, ""):
            return None
        # LangGraph Server names the assistant; a local graph, its name.
        graph = metadata.get("assistant_id") or metadata.get("graph_id") or name
        return str(graph), str(thread_id)

    def _child_span(self, run_id: UUID, parent: UUID, name: str, kind: str,
                    metadata: dict) -> Span | None:
        if kind == "tool":
            span_name, attrs = f"execute_tool {name}", {A.OPERATION: "execute_tool",
                                                        A.TOOL_NAME: name}
        elif kind == "chain" and metadata.get("langgraph_node") == name:
            span_name, attrs = name, {A.LG_NODE: name}
            if "langgraph_step" in metadata:
                attrs[A.LG_STEP] = int(metadata["langgraph_step"])
            if "langgraph_checkpoint_ns" in metadata:
                attrs[A.LG_CHECKPOINT_NS] = str(metadata["langgraph_checkpoint_ns"])
        else:
            return None
        root = self._roots[self._root_of[run_id]]
        attrs[A.PROGRAM_ID] = root.program_id
        parent_span = self._nearest_span(parent)
        ctx = trace.set_span_in_context(parent_span) if parent_span else None
        return self.tracer.start_span(span_name, context=ctx, attributes=attrs)

    def _nearest_span(self, run_id: UUID | None) -> Span | None:
        while run_id is not None:
            span = self._span_of.get(run_id)
            if span is not None:
                return span
            run_id = self._parent_of.get(run_id)
        return None

    def _on_end(self, run_id: UUID, error: BaseException | None = None) -> None:
        with self._lock:
            span = self._span_of.pop(run_id, None)
            root_id = self._root_of.pop(run_id, None)
            self._parent_of.pop(run_id, None)
            root = self._roots.pop(run_id, None) if root_id == run_id else None
        if span is not None:
            if error is not None:
                _mark_error(span, error)
            span.end()
        if root is not None:
            self._finish_program(root, error)

    def _finish_program(self, root: _Root, error: BaseException | None) -> None:
        """A root run ended: a run-scoped program ends with it; a thread's program
        lives on (only the run's calls ended), remembering the engines it used."""
        if root.thread is None:
            _end_on(root.clients, root.program_id)
        with self._lock:
            if root.thread is not None:
                known = self._thread_programs.setdefault(root.program_id, [])
                known += [c for c in root.clients if all(c.key != k.key for k in known)]
                self._thread_programs.move_to_end(root.program_id)
            self.finished[root.program_id] = FinishedProgram(
                root.program_id, root.calls, tuple(sorted(root.threads)),
                None if error is None else type(error).__name__,
            )
            while len(self.finished) > FINISHED_MEMORY:
                self.finished.popitem(last=False)

    def _bound(self) -> None:
        while len(self._root_of) > MAX_RUNS:
            stale, _ = self._root_of.popitem(last=False)
            self._span_of.pop(stale, None)
            self._parent_of.pop(stale, None)

    # -- threads -------------------------------------------------------------------------
    def end_thread(self, thread_id: str, graph: str | None = None) -> list[str]:
        """End the programs of LangGraph thread ``thread_id`` (of every graph, or of
        ``graph``: a graph name or LangGraph Server assistant id) on every engine that
        served them; returns their ids."""
        suffix = f":{thread_id}"
        with self._lock:
            ended = [pid for pid in self._thread_programs if pid.endswith(suffix)
                     and (graph is None or pid == f"{graph}{suffix}")]
            clients = [self._thread_programs.pop(pid) for pid in ended]
        for pid, served in zip(ended, clients, strict=True):
            _end_on(served, pid)
        return ended

    # -- what the chat model asks -------------------------------------------------------
    def call_context(self, enclosing_run: UUID | None, explicit_program: str | None) -> CallContext:
        """Program and parent span for a call made inside ``enclosing_run``."""
        with self._lock:
            root_id = self._root_of.get(enclosing_run) if enclosing_run else None
            root = self._roots.get(root_id) if root_id else None
            span = self._nearest_span(enclosing_run)
        program = explicit_program or (root.program_id if root else None)
        return CallContext(program, span)

    def record_call(self, enclosing_run: UUID | None, client: Any, thread: str) -> None:
        """Remember that a call of the run's program used ``client`` (to end it later)."""
        with self._lock:
            root_id = self._root_of.get(enclosing_run) if enclosing_run else None
            root = self._roots.get(root_id) if root_id else None
            if root is None:
                return
            root.calls += 1
            root.threads.add(thread)
            if all(c.key != client.key for c in root.clients):
                root.clients.append(client)

    # -- LangChain callbacks ----------------------------------------------------------------
    def on_chain_start(self, serialized, inputs, *, run_id, parent_run_id=None, tags=None,
                       metadata=None, **kwargs: Any) -> None:
        name = kwargs.get("name") or _name(serialized, "chain")
        self._on_start(run_id, parent_run_id, name, "chain", metadata)

    def on_chat_model_start(self, serialized, messages, *, run_id, parent_run_id=None,
                            tags=None, metadata=None, **kwargs: Any) -> None:
        self._on_start(run_id, parent_run_id, kwargs.get("name") or "chat", "llm", metadata)

    def on_llm_start(self, serialized, prompts, *, run_id, parent_run_id=None, tags=None,
                     metadata=None, **kwargs: Any) -> None:
        self._on_start(run_id, parent_run_id, kwargs.get("name") or "llm", "llm", metadata)

    def on_tool_start(self, serialized, input_str, *, run_id, parent_run_id=None, tags=None,
                      metadata=None, **kwargs: Any) -> None:
        name = kwargs.get("name") or _name(serialized, "tool")
        self._on_start(run_id, parent_run_id, name, "tool", metadata)

    def on_retriever_start(self, serialized, query, *, run_id, parent_run_id=None, tags=None,
                           metadata=None, **kwargs: Any) -> None:
        self._on_start(run_id, parent_run_id, _name(serialized, "retriever"), "retriever",
                       metadata)

    def on_chain_end(self, outputs, *, run_id, **kwargs: Any) -> None:
        self._on_end(run_id)

    def on_chain_error(self, error, *, run_id, **kwargs: Any) -> None:
        self._on_end(run_id, error)

    def on_llm_end(self, response, *, run_id, **kwargs: Any) -> None:
        self._on_end(run_id)

    def on_llm_error(self, error, *, run_id, **kwargs: Any) -> None:
        self._on_end(run_id, error)

    def on_tool_end(self, output, *, run_id, **kwargs: Any) -> None:
        self._on_end(run_id)

    def on_tool_error(self, error, *, run_id, **kwargs: Any) -> None:
        self._on_end(run_id, error)

    def on_retriever_end(self, documents, *, run_id, **kwargs: Any) -> None:
        self._on_end(run_id)

    def on_retriever_error(self, error, *, run_id, **kwargs: Any) -> None:
        self._on_end(run_id, error)


def _end_on(clients: list[Any], program_id: str) -> None:
    for client in clients:
        try:
            client.end_program(program_id)
        except Exception:  # noqa: BLE001 - an unreachable engine must not break the run
            pass


def _name(serialized: dict | None, default: str) -> str:
    if not serialized:
        return default
    return serialized.get("name") or (serialized.get("id") or [default])[-1]


def _mark_error(span: Span, error: BaseException) -> None:
    span.set_status(Status(StatusCode.ERROR, str(error) or type(error).__name__))
    span.set_attribute("error.type", type(error).__qualname__)


_HANDLER = AutellixCallbackHandler()
_handler_var: ContextVar[AutellixCallbackHandler | None] = ContextVar(
    "autellix_handler", default=_HANDLER
)
_installed = False
_install_lock = threading.Lock()


def install() -> AutellixCallbackHandler:
    """Attach the process-wide handler to every LangChain run (idempotent)."""
    global _installed
    with _install_lock:
        if not _installed:
            register_configure_hook(_handler_var, inheritable=True)
            _installed = True
    return _HANDLER


def handler() -> AutellixCallbackHandler:
    """The process-wide handler."""
    return _HANDLER


def configure(scope: str = "thread") -> None:
    """The default program scope: ``"thread"`` (a LangGraph thread is one program across
    its runs) or ``"run"`` (every root run is a program of its own)."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    _HANDLER.default_scope = scope


def end_thread(thread_id: str, graph: str | None = None) -> list[str]:
    """End the program of a LangGraph thread now (its KV is freed, its attained service
    forgotten): of every graph, or only ``graph`` (a graph name, or an assistant id
    under LangGraph Server). Returns the ids of the programs ended."""
    return _HANDLER.end_thread(str(thread_id), graph)


def ending_programs(saver: Any) -> Any:
    """Make a LangGraph checkpointer end a thread's program when the thread is deleted
    (``delete_thread``/``adelete_thread``: what ``DELETE /threads/{id}`` of LangGraph
    Server calls on a custom checkpointer). Returns ``saver`` itself."""
    delete, adelete = saver.delete_thread, saver.adelete_thread

    def delete_thread(thread_id: str) -> None:
        end_thread(str(thread_id))
        delete(thread_id)

    async def adelete_thread(thread_id: str) -> None:
        end_thread(str(thread_id))
        await adelete(thread_id)

    saver.delete_thread, saver.adelete_thread = delete_thread, adelete_thread
    return saver
