"""The front end: the program API over a pool of replicas.

Example::

    async with AutellixEngine(EngineConfig(model="tiny", policy="atlas")) as eng:
        async with eng.program() as prog:
            out = await prog.generate("Hello", max_tokens=32)
        print(eng.programs())

``AutellixEngine`` owns everything about programs: the process table (one for all
replicas, so a program's service counts wherever its calls ran), tokenization and
validation, the totals, and the collection of abandoned programs. Its replicas are a
:class:`~autellix_engine.frontend.pool.ReplicaPool`: embedded vLLM engines
(``EngineConfig.replicas``; one by default) and remote ``vllm serve`` replicas running
our scheduler (``EngineConfig.remote_urls``), in any mix, with health checks, routing
and retries. Read its state through the query methods (``programs``,
``program_stats``, ``active_calls``, ``totals``, ``replicas``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from autellix_engine.core import CallStats, ProcessTable, ProgramSnapshot, Tally, create_policy
from autellix_engine.core.errors import (
    EngineNotRunningError,
    InvalidRequestError,
    PromptTooLongError,
)
from autellix_engine.core.wire import ProgramTag
from autellix_engine.frontend import telemetry
from autellix_engine.frontend.backends.base import (
    Backend,
    BackendCall,
    Delta,
    Finish,
    NativeSampling,
)
from autellix_engine.frontend.backends.embedded import EmbeddedBackend
from autellix_engine.frontend.backends.http import HttpBackend
from autellix_engine.frontend.chat_render import load_template, render_chat
from autellix_engine.frontend.config import EngineConfig
from autellix_engine.frontend.logs import announce
from autellix_engine.frontend.pool import PoolCounters, ReplicaPool, ReplicaState
from autellix_engine.frontend.results import (
    CallResult,
    StreamChunk,
    TokenLogprob,
    Usage,
)
from autellix_engine.frontend.sampling import (
    DEFAULT_MAX_TOKENS,
    SAMPLING_KEYS,
    Sampling,
    check_text,
)

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_MAX_TOKENS", "SAMPLING_KEYS", "AutellixEngine", "Program"]

Prompt = str | Sequence[dict[str, Any]] | Sequence[int]


class AutellixEngine:
    """Program-aware serving over one or more vLLM replicas.

    Use as an async context manager, or call :meth:`start` and :meth:`aclose`.
    Keyword arguments override fields of ``config``. ``backends`` replaces the
    replicas the config describes (e.g. a custom :class:`Backend`).
    """

    def __init__(self, config: EngineConfig | None = None, *,
                 backends: Sequence[Backend] | None = None, **overrides: Any) -> None:
        base = config or EngineConfig()
        if overrides:
            base = EngineConfig(**{**base.__dict__, **overrides})
        self.config = base
        self._policy = create_policy(base.policy, base.policy_config)
        self._table = ProcessTable(self._policy.updated_program_service,
                                   ttl_s=base.policy_config.program_ttl_s,
                                   max_programs=base.policy_config.max_programs)
        self._pool = ReplicaPool(base, list(backends) if backends else _backends(base))
        self._totals = Tally()  # over this front end's finished calls
        self._collector: asyncio.Task | None = None
        self._tokenizer: Any = None
        self._chat_template = load_template(base.chat_template)
        self._max_model_len: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False
        self._closed = False

    # -- lifecycle --------------------------------------------------------------------
    async def start(self) -> AutellixEngine:
        """Start every replica; one that cannot start stops the others and raises."""
        if self._started:
            return self
        if self._closed:
            raise EngineNotRunningError("This engine was closed; create a new one")
        began = time.monotonic()
        n = len(self._pool.states())
        with _tracer().start_as_current_span("autellix.engine.start", attributes={
                telemetry.REQUEST_MODEL: self.config.model,
                telemetry.POLICY: self.config.policy, "autellix.replicas": n}) as span:
            try:
                await self._pool.start()
            except BaseException as e:
                span.record_exception(e)
                raise
        self._tokenizer = self._pool.tokenizer
        self._max_model_len = self._pool.max_model_len
        self._loop = asyncio.get_running_loop()
        self._started = True
        self._collector = asyncio.create_task(self._collect_programs())
        replicas = "" if n == 1 else f", {n} replicas"
        announce("engine started (%s, %s%s) in %.1f s", self.config.model, self.config.policy,
                 replicas, time.monotonic() - began)
        return self

    async def aclose(self) -> None:
        """Stop the replicas; in-flight calls fail with ``EngineNotRunningError``."""
        self._closed = True
        self._started = False
        if self._collector is not None:
            self._collector.cancel()
        await self._pool.aclose()

    async def __aenter__(self) -> AutellixEngine:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _collect_programs(self) -> None:
        while True:
            await asyncio.sleep(self.config.program_gc_interval_s)
            for program_id in self._table.collect_stale():
                self._pool.program_ended(program_id)

    @property
    def is_alive(self) -> bool:
        """Liveness (a supervisor should restart the process when False): started,
        the health monitor runs, and some replica ran calls within ``dead_after_s``."""
        return self._started and self._pool.is_alive

    @property
    def tokenizer(self) -> Any:
        """The model's Hugging Face tokenizer (available once started)."""
        self._ensure_running()
        return self._tokenizer

    @property
    def chat_template(self) -> str | None:
        """The chat template that renders chat prompts (``EngineConfig.chat_template``,
        else the tokenizer's; available once started)."""
        if self._chat_template is not None:
            return self._chat_template
        return None if self._tokenizer is None else self._tokenizer.chat_template

    @property
    def model_name(self) -> str:
        return self.config.model

    @property
    def max_model_len(self) -> int | None:
        """The context length in tokens (the smallest of the replicas'), once started."""
        return self._max_model_len

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the engine runs on (its calls must be made there)."""
        return self._loop

    @property
    def is_running(self) -> bool:
        """Started, and at least one replica in the pool can run calls."""
        return self._started and self._pool.is_running

    # -- programs ---------------------------------------------------------------------
    def program(self, program_id: str | None = None) -> Program:
        """Start a program; use the returned handle as ``async with`` to end it."""
        return Program(self, self._table.start_program(program_id))

    def start_program(self, program_id: str | None = None) -> str:
        """Start a program explicitly and return its id."""
        return self._table.start_program(program_id)

    def ensure_program(self, program_id: str) -> None:
        """Start ``program_id`` unless it is running (an ended id starts afresh)."""
        if program_id not in self._table:
            try:
                self._table.start_program(program_id)
            except ValueError:
                pass  # started concurrently

    def end_program(self, program_id: str) -> ProgramSnapshot:
        """End a program: later calls on it raise ``ProgramEndedError``; its replicas
        free what they retained for it.

        Raises:
            UnknownProgramError: no such program is running.
        """
        snapshot = self._table.end_program(program_id)
        self._pool.program_ended(program_id)
        return snapshot

    # -- queries ------------------------------------------------------------------------
    def programs(self) -> list[ProgramSnapshot]:
        """Snapshots of the running programs, oldest first."""
        return self._table.snapshot()

    def program_stats(self, program_id: str) -> ProgramSnapshot | None:
        """A running program's snapshot, else the final one of a recently ended
        program, else None."""
        return self._table.get(program_id) or self._table.ended_snapshot(program_id)

    def is_program_running(self, program_id: str) -> bool:
        return program_id in self._table

    def active_calls(self) -> int:
        """Calls in flight (begun, not finished, failed or cancelled)."""
        return self._table.active_calls()

    def totals(self) -> Tally:
        """Totals over this front end's finished calls (a copy)."""
        return self._totals.copy()

    def counters(self) -> PoolCounters:
        """Replica faults: calls retried and failed, replicas that rejoined (a copy)."""
        return dataclasses.replace(self._pool.counters)

    def replicas(self) -> list[ReplicaState]:
        """Each replica: health, calls in flight, its engine's gauges."""
        return self._pool.states()

    def replica(self, index: int) -> Backend:
        """A replica's back end (e.g. an embedded one's vLLM ``AsyncLLM``, ``.llm``)."""
        return self._pool.replica(index)

    # -- calls ------------------------------------------------------------------------
    async def generate(
        self, prompt: Prompt, *, program_id: str | None = None, thread: str = "main",
        **params: Any,
    ) -> CallResult:
        """Run one call to completion. See :meth:`stream` for the arguments."""
        result = None
        async for chunk in self.stream(prompt, program_id=program_id, thread=thread, **params):
            result = chunk.result or result
        assert result is not None
        return result

    async def stream(
        self, prompt: Prompt, *, program_id: str | None = None, thread: str = "main",
        max_tokens: int | None = DEFAULT_MAX_TOKENS, json_schema: dict | None = None,
        trace_context: dict[str, str] | None = None, priority: int = 0,
        remaining_work: float | None = None, call_id: str | None = None,
        tools: list[dict[str, Any]] | None = None, chat_template: str | None = None,
        structural_tag: str | None = None, **params: Any,
    ) -> AsyncIterator[StreamChunk]:
        """Run one call, yielding text as it is generated.

        Args:
            prompt: text, a list of chat messages (``{"role", "content"}`` dicts, the
                model's chat template is applied) or prompt token ids.
            program_id: the program the call belongs to. Unknown ids create the program;
                None makes the call a program of its own.
            thread: label of the call's thread within its program.
            tools: OpenAI tool definitions for the chat template (native tool calling:
                the template shows them to the model; chat prompts only). Assistant
                messages may carry ``tool_calls`` and tool results ``tool_call_id``.
            chat_template: this call's chat template (text or a file path), instead of
                the engine's (``EngineConfig.chat_template``, else the tokenizer's).
            max_tokens: output cap (None: up to the context length).
            json_schema: constrain the output to this JSON schema (guided decoding).
            structural_tag: constrain the output by an xgrammar structural tag (JSON
                text; vLLM's ``structured_outputs.structural_tag``): how vLLM's tool
                parsers hold a call to the model's native tool format.
            trace_context: W3C trace headers (``traceparent``, ``tracestate``) of the
                caller's span. ``traceparent`` rides with the request into the engine
                core (``extra_args``); both go to vLLM's own tracing when it is
                enabled (``EngineConfig.otlp_traces_endpoint``).
            priority: the caller's own priority (vLLM's ``priority``: lower first). A
                strict outer key: the policy orders calls of equal priority by program
                (``Policy.sort_key``). Needs a program-aware policy (not ``fcfs``).
            call_id: the call's id (its vLLM request id too; the server uses its
                response id); default: a fresh one. Unique among calls in flight.
            remaining_work: a clairvoyant hint for the ``srpt`` yardstick policy: the
                output tokens the program still has to generate, this call's included
                (the workload generator knows it; real clients do not). Other policies
                ignore it.
            **params: sampling parameters (``temperature``, ``top_p``, ``seed``,
                ``stop``, ``ignore_eos``, ... see ``SAMPLING_KEYS``).

        Raises:
            InvalidRequestError: bad prompt or sampling values.
            PromptTooLongError: the prompt leaves no room in the context.
            ProgramEndedError: the program has ended.
            EngineNotRunningError: the engine is not running.
            ReplicaError: replicas failed the call (after its first token, or on every
                try).
        """
        self._ensure_running()
        prompt_ids = self._encode(prompt, tools, chat_template)
        sampling = Sampling.from_params(max_tokens, json_schema, structural_tag, **params)
        if sampling.max_tokens is None and self._max_model_len is not None:
            sampling = sampling.with_max_tokens(self._max_model_len - len(prompt_ids))
        self._check_priority(priority)
        if remaining_work is not None and (
                isinstance(remaining_work, bool) or not isinstance(remaining_work, int | float)
                or not 0 <= remaining_work < float("inf")):
            raise InvalidRequestError(f"remaining_work must be a number >= 0, got "
                                      f"{remaining_work!r}")
        trace = _trace_headers(trace_context)
        # aclosing: leaving this stream early must end the call now (its bookkeeping
        # and its engine request), not when the inner generator is collected.
        async with contextlib.aclosing(self._tracked(
                prompt_ids, sampling, program_id, thread, call_id, priority, trace,
                remaining_work)) as events:
            async for event, result in events:
                if isinstance(event, Delta):
                    yield StreamChunk(event.text, event.token_ids, logprobs=event.logprobs)
                else:
                    assert result is not None
                    yield StreamChunk("", (), result.finish_reason, result)

    async def stream_native(
        self, engine_input: Mapping[str, Any], params: Any, *, request_id: str,
        program_id: str | None = None, thread: str = "main", priority: int = 0,
        trace_context: dict[str, str] | None = None,
        on_result: Callable[[CallResult], None] | None = None,
    ) -> AsyncIterator[Any]:
        """Run one call prepared by vLLM's own OpenAI layer and yield vLLM's
        ``RequestOutput`` objects as they come (what ``EngineClient.generate`` returns).

        ``engine_input`` is vLLM's rendered input (token ids, and whatever else its
        renderer put there) and ``params`` its validated ``SamplingParams``; both go to
        the replica as they are, tagged with the program (a remote replica gets them
        as token ids: ``backends.http_native``). ``on_result`` receives the call's
        ``CallResult`` (usage, the scheduler's statistics) when it finishes.
        """
        self._ensure_running()
        prompt_ids = engine_input.get("prompt_token_ids") if isinstance(
            engine_input, Mapping) else None
        if not prompt_ids:
            raise InvalidRequestError("The call has no prompt token ids")
        self._encode(list(prompt_ids))  # our own checks: vocabulary, context length
        self._check_priority(priority)
        sampling = NativeSampling(params, engine_input)
        async with contextlib.aclosing(self._tracked(
                tuple(prompt_ids), sampling, program_id, thread, request_id, priority,
                _trace_headers(trace_context), None)) as events:
            async for event, result in events:
                if isinstance(event, Delta) and event.raw is not None:
                    yield event.raw
                elif result is not None and on_result is not None:
                    on_result(result)

    async def _tracked(
        self, prompt_ids: Sequence[int], sampling: Sampling | NativeSampling,
        program_id: str | None, thread: str, call_id: str | None, priority: int,
        trace: dict[str, str], remaining_work: float | None,
    ) -> AsyncIterator[tuple[Delta | Finish, CallResult | None]]:
        """Run a validated call as part of its program: the process table's
        bookkeeping around the pool's events (with the result at the end)."""
        for name, value in (("program_id", program_id), ("thread", thread),
                            ("call_id", call_id)):
            if value is None and name != "thread":
                continue
            if not isinstance(value, str) or not value:
                raise InvalidRequestError(f"{name} must be a non-empty str, got {value!r}")
            check_text(value, name)
        one_off = program_id is None
        pid = program_id or f"call-{uuid.uuid4().hex}"
        created = pid not in self._table
        try:
            ticket = self._table.begin_call(pid, thread, call_id=call_id)
        except ValueError as e:  # a call id in flight already
            raise InvalidRequestError(str(e)) from None
        tag = ProgramTag(pid, thread, ticket.program_service, ticket.program_wait,
                         trace.get("traceparent"), remaining_work, ticket.program_arrival,
                         ended_programs=(pid,) if one_off else ())
        call = BackendCall(ticket.call_id, tuple(prompt_ids), sampling, tag, priority, trace)
        output = _Output(time.monotonic(), call.request_id)
        finished = refused = False
        try:
            async with contextlib.aclosing(self._pool.run(call)) as events:
                async for index, event in events:
                    if isinstance(event, Delta):
                        output.add(event)
                        yield event, None
                    else:
                        result = output.result(event, call, index, self._estimate,
                                               self.config.policy)
                        finished = True
                        self._record(result)
                        yield event, result
        except ValueError:  # InvalidRequestError, or vLLM's own checks on the replica
            refused = True
            raise
        finally:
            if not finished:
                self._table.abort_call(pid, ticket.call_id)
            if one_off and pid in self._table:
                self._table.end_program(pid)  # its replica knows: the call said so
            elif created and refused:
                self._table.discard(pid)  # its first call was refused: it never ran

    def _estimate(self, prompt_tokens: int, cached: int, tokens: int) -> CallStats:
        """A replica that reports no statistics: service from the usage, in the
        scheduler's token unit (decode tokens plus weighted uncached prompt tokens)."""
        weight = self.config.policy_config.prefill_token_weight
        return CallStats(service=tokens + weight * max(0, prompt_tokens - cached),
                         prefill_tokens=prompt_tokens - cached, decode_tokens=tokens)

    def _record(self, result: CallResult) -> None:
        u = result.usage
        self._totals.add(result.stats, u.prompt_tokens, u.cached_tokens, u.completion_tokens)
        self._table.complete_call(result.program_id, result.call_id, result.stats,
                                  prompt_tokens=u.prompt_tokens, cached_tokens=u.cached_tokens,
                                  completion_tokens=u.completion_tokens,
                                  replica_id=result.replica)

    # -- input handling ---------------------------------------------------------------
    def _check_priority(self, priority: Any) -> None:
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise InvalidRequestError(f"priority must be an integer, got {priority!r}")
        if not -(2**31) <= priority < 2**31:
            raise InvalidRequestError("priority must fit in 32 bits")
        if priority and self.config.policy == "fcfs":
            raise InvalidRequestError("priority needs a program-aware policy (mlfq, plas, "
                                      "atlas or srpt); this engine runs fcfs")

    def _ensure_running(self) -> None:
        if not self._started:
            state = "closed" if self._closed else "not started (use 'async with' or start())"
            raise EngineNotRunningError(f"The engine is {state}")
        if not self.is_running:
            raise EngineNotRunningError("No replica of the engine is running")

    def _encode(self, prompt: Prompt, tools: list[dict[str, Any]] | None = None,
                chat_template: str | None = None) -> list[int]:
        tok = self._tokenizer
        is_chat = isinstance(prompt, Sequence) and not isinstance(prompt, str) and bool(
            prompt) and all(isinstance(m, dict) for m in prompt)
        if tools is not None and not is_chat:
            raise InvalidRequestError("tools need a chat prompt (a list of messages)")
        if isinstance(prompt, str):
            check_text(prompt, "The prompt")
            ids = tok.encode(prompt)
        elif is_chat:
            template = self._chat_template if chat_template is None else _template(chat_template)
            text = render_chat(tok, prompt, tools, template)
            ids = tok.encode(text, add_special_tokens=False)
        elif isinstance(prompt, Sequence) and prompt and all(
            isinstance(t, int) and not isinstance(t, bool) for t in prompt
        ):
            ids = list(prompt)
            vocab = len(tok)
            bad = next((t for t in ids if t < 0 or t >= vocab), None)
            if bad is not None:  # vLLM's words: clients match them
                raise InvalidRequestError(f"Token id {bad} is out of vocabulary (ids are in "
                                          f"[0, {vocab}))")
        else:
            msg = (
                "prompt must be a non-empty str, a list of chat messages "
                f"({{'role', 'content'}} dicts) or a list of token ids; got {type(prompt).__name__}"
            )
            raise InvalidRequestError(msg)
        if not ids:
            raise InvalidRequestError("The prompt is empty")
        limit = self._max_model_len
        if limit is not None and len(ids) >= limit:
            msg = (
                f"The prompt has {len(ids)} tokens; the context holds {limit} "
                "(prompt plus at least one output token)"
            )
            raise PromptTooLongError(msg)
        return ids



def _template(template: Any) -> str | None:
    if not isinstance(template, str):
        raise InvalidRequestError("chat_template must be a string (a template or a path)")
    check_text(template, "chat_template")
    return load_template(template)


class _Output:
    """What a call has returned so far (across retries: only calls without output retry)."""

    def __init__(self, submitted: float, call_id: str) -> None:
        self.submitted = submitted
        self.call_id = call_id
        self.first_token: float | None = None
        self.text: list[str] = []
        self.token_ids: list[int] = []
        self.logprobs: list[TokenLogprob] = []

    def add(self, delta: Delta) -> None:
        if delta.token_ids and self.first_token is None:
            self.first_token = time.monotonic()
        self.text.append(delta.text)
        self.token_ids.extend(delta.token_ids)
        self.logprobs.extend(delta.logprobs)

    def result(self, finish: Finish, call: BackendCall, replica: int,
               estimate: Callable[[int, int, int], CallStats], policy: str) -> CallResult:
        cached = finish.cached_tokens
        stats = finish.stats or estimate(len(call.prompt_ids), cached, len(self.token_ids))
        ttft = None if self.first_token is None else self.first_token - self.submitted
        return CallResult(
            "".join(self.text), tuple(self.token_ids), finish.finish_reason,
            finish.stop_reason, Usage(len(call.prompt_ids), len(self.token_ids), cached),
            stats, time.monotonic() - self.submitted, ttft, call.tag.program_id,
            call.tag.thread_id, self.call_id, replica, tuple(self.logprobs), policy,
        )


def _tracer() -> Any:
    from opentelemetry import trace

    return trace.get_tracer("autellix_engine")


def _trace_headers(trace_context: Any) -> dict[str, str]:
    """W3C trace headers as ``{str: str}`` (they travel to the engine core, whose
    decoder accepts nothing else)."""
    if trace_context is None:
        return {}
    if not isinstance(trace_context, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in trace_context.items()):
        raise InvalidRequestError("trace_context must be a dict of str to str "
                                  f"(W3C trace headers), got {trace_context!r}")
    for value in trace_context.values():
        check_text(value, "trace_context")
    return dict(trace_context)


def _backends(config: EngineConfig) -> list[Backend]:
    embedded: list[Backend] = [EmbeddedBackend(config) for _ in range(config.num_embedded)]
    return embedded + [HttpBackend(url, config) for url in config.remote_urls]


class Program:
    """Handle of a running program. ``async with`` ends it on exit, even on error."""

    def __init__(self, engine: AutellixEngine, program_id: str) -> None:
        self.engine = engine
        self.id = program_id
        self._ended = False

    async def generate(self, prompt: Prompt, *, thread: str = "main", **params: Any) -> CallResult:
        """One call of this program (see ``AutellixEngine.stream`` for arguments)."""
        return await self.engine.generate(prompt, program_id=self.id, thread=thread, **params)

    def stream(self, prompt: Prompt, *, thread: str = "main", **params: Any):
        """Stream one call of this program."""
        return self.engine.stream(prompt, program_id=self.id, thread=thread, **params)

    def stats(self) -> ProgramSnapshot | None:
        """This program's snapshot (its final one once ended)."""
        return self.engine.program_stats(self.id)

    def end(self) -> ProgramSnapshot | None:
        """End the program (idempotent); returns its final snapshot the first time."""
        if self._ended:
            return None
        self._ended = True
        return self.engine.end_program(self.id)

    async def __aenter__(self) -> Program:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.end()
