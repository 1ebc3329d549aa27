"""vLLM's ``EngineClient`` over the program-aware front end.

vLLM's OpenAI serving layer (chat, completions, responses, tokenize, tool and
reasoning parsers) drives an ``EngineClient`` (``vllm/engine/protocol.py``). This one
is :class:`~autellix_engine.frontend.engine.AutellixEngine`: every ``generate`` goes
through the process table, the router, retries and our scheduler, and returns the
replica's own ``RequestOutput`` objects, so vLLM's layer renders, parses and
detokenizes exactly as in ``vllm serve``.

A call's program is what the server put in :data:`CALL_IDENTITY` for this request
(our program header), else vLLM's ``session_id`` (the body field, the ``X-Session-ID``
header or ``vllm_xargs.session_id``, as vLLM reads them), else the gateway's fairness
id, else the call is a program of its own.

The serving layer needs the model's vLLM configuration, renderer and input processor;
they are built here as ``AsyncLLM`` builds them (every replica runs the same model; a
remote replica's calls travel as token ids: ``backends.http_native``).
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Protocol

from vllm.engine.protocol import EngineClient
from vllm.exceptions import GracefulHTTPError

from autellix_engine.core.errors import (
    EngineNotRunningError,
    ProgramEndedError,
    ReplicaError,
)
from autellix_engine.frontend.backends.embedded import EmbeddedBackend
from autellix_engine.frontend.engine import AutellixEngine
from autellix_engine.frontend.models import resolve_model
from autellix_engine.frontend.results import CallResult
from autellix_engine.frontend.sampling import check_id
from autellix_engine.frontend.vllm_setup import serving_parts


@dataclass(frozen=True, slots=True)
class CallIdentity:
    """What the server knows about a request's program beyond vLLM's ``session_id``."""

    scope: str = "anon"  # program ids are scoped per API key (``<scope>/<id>``)
    program_id: str | None = None
    thread_id: str = "main"
    route: str = ""  # the request's path
    headers: Mapping[str, str] = field(default_factory=dict)  # trace context (W3C)
    gateway_id: str | None = None  # llm-d's fairness id: the program if nothing else is


class CallObserver(Protocol):
    """What watches one call for the server (its span): the trace context the call
    carries into the engine, and the call's end."""

    trace_context: dict[str, str]

    def finish(self, result: CallResult | None = None, error: BaseException | None = None,
               status: int | None = None) -> None:
        ...


#: Builds a call's observer: (identity, request id, program id, sampling params).
ObserverFactory = Callable[[CallIdentity, str, str | None, Any], CallObserver]


#: Set by the server per request (a context variable: it reaches the handler's task).
CALL_IDENTITY: contextvars.ContextVar[CallIdentity] = contextvars.ContextVar(
    "autellix_call_identity", default=CallIdentity())


class ProgramEngineClient(EngineClient):
    """An ``EngineClient`` whose calls run as programs on an ``AutellixEngine``."""

    def __init__(self, engine: AutellixEngine,
                 admit: Callable[[str], None] | None = None,
                 max_tokens_limit: int | None = None,
                 observe: ObserverFactory | None = None) -> None:
        """``admit(scope)`` runs before a call starts a new program of that key's
        scope; it may refuse with a ``GracefulHTTPError`` (e.g. 429).
        ``max_tokens_limit`` caps each call's output (vLLM's layer fills an unset
        ``max_tokens`` with the context left, so a cap, not a refusal). ``observe``
        builds each call's observer (the server's span)."""
        replicas = [s.index for s in engine.replicas()]
        backends = [engine.replica(i) for i in replicas]
        self._engine = engine
        self._admit = admit
        self._max_tokens = max_tokens_limit
        self._observe = observe
        self._embedded = [b for b in backends if isinstance(b, EmbeddedBackend)]
        if not engine.is_running:
            raise EngineNotRunningError("Start the engine before serving it")
        # Its own, not a replica's: vLLM's layer keeps the renderer for the server's
        # life, and a replica that is restarted shuts its own down.
        config = engine.config
        model = resolve_model(config.model, config.vllm_kwargs.get("revision"))
        parts = serving_parts(config, model, engine.max_model_len)
        self.vllm_config, self.renderer, self.input_processor = parts
        self.model_config = self.vllm_config.model_config

    def _llms(self) -> list[Any]:
        return [b.llm for b in self._embedded if b.llm is not None]

    # -- state ------------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        return self._engine.is_running

    @property
    def is_stopped(self) -> bool:
        return not self._engine.is_running

    @property
    def errored(self) -> bool:
        # vLLM's server exits when its engine errors; ours restarts replicas, so only
        # a front end with no live replica at all counts.
        return not self._engine.is_alive

    @property
    def dead_error(self) -> BaseException:
        return EngineNotRunningError("No replica of the engine is running")

    async def check_health(self) -> None:
        # vLLM's ``/health`` answers 503 for ``EngineDeadError`` (anything else is a 500).
        from vllm.v1.engine.exceptions import EngineDeadError

        if not self._engine.is_running:
            raise EngineDeadError("No replica of the engine is running")

    # -- calls ------------------------------------------------------------------------
    async def generate(self, prompt: Any, sampling_params: Any, request_id: str, *,
                       trace_headers: Mapping[str, str] | None = None, priority: int = 0,
                       session_id: str | None = None, lora_request: Any = None,
                       **ignored: Any) -> AsyncGenerator[Any, None]:
        """Run one call as part of its program; vLLM's ``RequestOutput`` objects.

        ``ignored``: what vLLM passes for features this front end does not route
        (``data_parallel_rank``, ``kv_hints``, reasoning state, tokenization options):
        they concern a single engine's internals.
        """
        if lora_request is not None:
            raise ValueError("LoRA adapters are not supported by this server")
        identity = CALL_IDENTITY.get()
        if session_id:  # vLLM's layer answers the ValueError with a 400
            check_id(session_id, "session_id")
        named = identity.program_id or session_id or identity.gateway_id
        program_id = f"{identity.scope}/{named}" if named else None
        if (self._max_tokens is not None and sampling_params.max_tokens is not None
                and sampling_params.max_tokens > self._max_tokens):
            sampling_params = sampling_params.clone()
            sampling_params.max_tokens = self._max_tokens
        if (program_id is not None and self._admit is not None
                and not self._engine.is_program_running(program_id)):
            self._admit(identity.scope)
        observer = (self._observe(identity, request_id, program_id, sampling_params)
                    if self._observe is not None else None)
        trace_context = dict(trace_headers or identity.headers)
        if observer is not None:
            trace_context = observer.trace_context  # the engine call joins its span
        try:
            yielded = False
            for restart in (False, True):
                try:
                    async for out in self._engine.stream_native(
                            prompt, sampling_params, request_id=request_id,
                            program_id=program_id, thread=identity.thread_id,
                            priority=priority, trace_context=trace_context,
                            on_result=observer.finish if observer is not None else None):
                        yielded = True
                        yield out
                    break
                except ProgramEndedError:
                    # Refused before it started: a session whose program was ended
                    # (through the program API) starts afresh, as a new conversation.
                    if restart or yielded or program_id is None:
                        raise
                    self._engine.ensure_program(program_id)
        except (EngineNotRunningError, ReplicaError) as e:
            _finish(observer, e, HTTPStatus.SERVICE_UNAVAILABLE)
            raise GracefulHTTPError(str(e), HTTPStatus.SERVICE_UNAVAILABLE) from e
        except ProgramEndedError as e:
            _finish(observer, e, HTTPStatus.CONFLICT)
            raise GracefulHTTPError(str(e), HTTPStatus.CONFLICT) from e
        except Exception as e:
            _finish(observer, e, None)
            raise
        finally:
            _finish(observer, None, None)  # a stream left early: the span still ends

    def encode(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("Pooling models are not served by this server")

    async def abort(self, request_id: str | Iterable[str]) -> None:
        # Closing the call's generator aborts it on its replica; this is for the
        # serving layer's own aborts, which name vLLM's request ids.
        ids = [request_id] if isinstance(request_id, str) else list(request_id)
        for llm in self._llms():
            await llm.abort(ids)

    async def notify_kv_transfer_request_rejected(self, *args: Any, **kwargs: Any) -> None:
        return None  # no KV transfer between replicas

    async def get_supported_tasks(self) -> tuple[Any, ...]:
        llms = self._llms()
        return await llms[0].get_supported_tasks() if llms else ("generate",)

    # -- administration: every embedded replica -----------------------------------------
    async def is_tracing_enabled(self) -> bool:
        llms = self._llms()
        return await llms[0].is_tracing_enabled() if llms else False

    async def do_log_stats(self) -> None:
        for llm in self._llms():
            await llm.do_log_stats()

    async def start_profile(self, *args: Any, **kwargs: Any) -> None:
        for llm in self._llms():
            await llm.start_profile(*args, **kwargs)

    async def stop_profile(self) -> None:
        for llm in self._llms():
            await llm.stop_profile()

    async def reset_mm_cache(self) -> None:
        for llm in self._llms():
            await llm.reset_mm_cache()

    async def reset_encoder_cache(self) -> None:
        for llm in self._llms():
            await llm.reset_encoder_cache()

    async def reset_prefix_cache(self, reset_running_requests: bool = False,
                                 reset_connector: bool = False) -> bool:
        done = [await llm.reset_prefix_cache(reset_running_requests, reset_connector)
                for llm in self._llms()]
        return all(done)

    async def sleep(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("Sleep mode is not supported by this server")

    async def release_kv_cache_memory(self) -> None:
        raise NotImplementedError("Sleep mode is not supported by this server")

    async def wake_up(self, tags: list[str] | None = None) -> bool:
        return True  # never asleep

    async def is_sleeping(self) -> bool:
        return False

    async def add_lora(self, lora_request: Any) -> bool:
        raise NotImplementedError("LoRA adapters are not supported by this server")

    async def pause_generation(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("Pausing is not supported by this server")

    async def resume_generation(self) -> None:
        raise NotImplementedError("Pausing is not supported by this server")

    async def is_paused(self) -> bool:
        return False

    def shutdown(self, timeout: float | None = None) -> None:
        # The engine's owner (``autellix serve``) closes the engine; the renderer is
        # this client's.
        self.renderer.shutdown()


def _finish(observer: CallObserver | None, error: BaseException | None,
            status: int | None) -> None:
    if observer is not None:
        observer.finish(error=error, status=status)
