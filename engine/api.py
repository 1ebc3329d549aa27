"""The front end: one process table and router over N back ends, with the engine API.

Example::

    async with AutellixEngine(EngineConfig(model="tiny", policy="atlas")) as eng:
        async with eng.program() as prog:
            out = await prog.generate("Hello", max_tokens=32)
        print(eng.programs())

The front end owns everything about programs: the process table (one for all
replicas, so a program's service counts wherever its calls ran), tokenization and
validation, routing (``autellix_engine.policy.routing``; default: the paper's locality
balancer), health and retries, totals, and the collection of abandoned programs. Each
replica is a back end (``autellix_engine.backends``): an embedded vLLM engine
(``EngineConfig.replicas``; one by default) or a remote ``vllm serve`` running our
scheduler (``EngineConfig.remote_urls``), in any mix. One engine is a pool of one.

Faults: a replica leaves the pool only when its health check fails (checked every
``health_interval_s``, and at once after a call fails on it), and rejoins when it
passes (a dead embedded engine is restarted). A call that a replica fails (a 5xx, a
reset or timed-out connection, a dead engine) is retried on another replica with
backoff while it has returned no token; after its first token it fails with
``ReplicaError`` and is counted (``totals.failed_calls``). A call the request is at
fault for (an HTTP 4xx) fails with ``InvalidRequestError`` at once and the replica
stays in the pool.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from autellix_engine.backends.base import Backend, BackendCall, Delta, Finish
from autellix_engine.backends.embedded import EmbeddedBackend
from autellix_engine.backends.http import HttpBackend
from autellix_engine.config import EngineConfig
from autellix_engine.errors import (
    EngineNotRunningError,
    InvalidRequestError,
    PromptTooLongError,
    ReplicaError,
)
from autellix_engine.policy import CallStats, ProcessTable, ProgramSnapshot, create_policy
from autellix_engine.policy.process_table import CallTicket
from autellix_engine.policy.routing import NoHealthyReplicaError, RouteInfo, create_router
from autellix_engine.policy.wire import ProgramTag
from autellix_engine.retention.notices import EndNotices
from autellix_engine.results import CallResult, CallTotals, StreamChunk, TokenLogprob, Usage
from autellix_engine.sampling import DEFAULT_MAX_TOKENS, SAMPLING_KEYS, Sampling, check_text

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
        self.policy = create_policy(base.policy, base.policy_config)
        self.table = ProcessTable(self.policy.updated_program_service,
                                  ttl_s=base.policy_config.program_ttl_s)
        self.replicas: list[Backend] = list(backends) if backends else _backends(base)
        self.router = create_router(base.routing, len(self.replicas), base.locality_threshold)
        self.notices = EndNotices(len(self.replicas))  # for replicas' KV retention
        self.totals = CallTotals()  # over this front end's finished calls
        self.rejoins = 0  # replicas brought back into the pool
        self._tasks: list[asyncio.Task] = []
        self._checking: set[int] = set()  # replicas with a health check under way
        self._checks: set[asyncio.Task] = set()  # health checks started by failed calls
        self._tokenizer: Any = None
        self._max_model_len: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False
        self._closed = False

    # -- lifecycle --------------------------------------------------------------------
    async def start(self) -> AutellixEngine:
        """Start every replica (one at a time: clearer errors, and 2 cores suffice)."""
        if self._started:
            return self
        if self._closed:
            raise EngineNotRunningError("This engine was closed; create a new one")
        try:
            for replica in self.replicas:
                await replica.start()
        except BaseException:
            for replica in self.replicas:
                await replica.aclose()
            raise
        self._tokenizer = self.replicas[0].tokenizer
        lengths = [r.max_model_len for r in self.replicas if r.max_model_len]
        self._max_model_len = min(lengths) if lengths else None
        self._loop = asyncio.get_running_loop()
        self._started = True
        self._tasks = [asyncio.create_task(self._monitor()),
                       asyncio.create_task(self._collect_programs())]
        return self

    async def aclose(self) -> None:
        """Stop the replicas; in-flight calls fail with ``EngineNotRunningError``."""
        self._closed = True
        self._started = False
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        for replica in self.replicas:
            await replica.aclose()

    async def __aenter__(self) -> AutellixEngine:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _collect_programs(self) -> None:
        while True:
            await asyncio.sleep(self.config.program_gc_interval_s)
            removed = self.table.collect_stale()
            if removed:
                logger.info("Collected %d abandoned programs", len(removed))

    async def _monitor(self) -> None:
        """Take replicas that fail their health check out of the pool; bring them back."""
        while True:
            await asyncio.sleep(self.config.health_interval_s)
            for index in range(len(self.replicas)):
                await self._check(index)

    async def _check(self, index: int) -> None:
        if index in self._checking:
            return
        self._checking.add(index)
        replica = self.replicas[index]
        try:
            healthy = await replica.check_health()
            if not healthy and self.config.revive_replicas and not self.router.healthy[index]:
                healthy = await replica.revive()
        except Exception:  # noqa: BLE001 - the monitor must survive anything
            logger.exception("Health check of replica %d (%s) failed", index, replica.name)
            healthy = False
        finally:
            self._checking.discard(index)
        if healthy != self.router.healthy[index]:
            self.router.set_health(index, healthy)
            self.rejoins += healthy
            logger.warning("Replica %d (%s) %s the pool", index, replica.name,
                           "rejoined" if healthy else "left")

    @property
    def tokenizer(self) -> Any:
        """The model's Hugging Face tokenizer (available once started)."""
        self._ensure_running()
        return self._tokenizer

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
        return self._started and any(
            ok and r.is_running for ok, r in zip(self.router.healthy, self.replicas,
                                                 strict=True))

    # -- programs ---------------------------------------------------------------------
    def program(self, program_id: str | None = None) -> Program:
        """Start a program; use the returned handle as ``async with`` to end it."""
        return Program(self, self.table.start_program(program_id))

    def start_program(self, program_id: str | None = None) -> str:
        """Start a program explicitly and return its id."""
        return self.table.start_program(program_id)

    def ensure_program(self, program_id: str) -> None:
        """Start ``program_id`` unless it is running (an ended id starts afresh)."""
        if program_id not in self.table:
            try:
                self.table.start_program(program_id)
            except ValueError:
                pass  # started concurrently

    def end_program(self, program_id: str) -> ProgramSnapshot:
        """End a program: later calls on it raise ``ProgramEndedError``."""
        self.router.forget(program_id)
        snapshot = self.table.end_program(program_id)
        self.notices.ended(program_id)
        return snapshot

    def programs(self) -> list[ProgramSnapshot]:
        """Snapshot of the process table."""
        return self.table.snapshot()

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
        remaining_work: float | None = None, **params: Any,
    ) -> AsyncIterator[StreamChunk]:
        """Run one call, yielding text as it is generated.

        Args:
            prompt: text, a list of chat messages (``{"role", "content"}`` dicts, the
                model's chat template is applied) or prompt token ids.
            program_id: the program the call belongs to. Unknown ids create the program;
                None makes the call a program of its own.
            thread: label of the call's thread within its program.
            max_tokens: output cap (None: up to the context length).
            json_schema: constrain the output to this JSON schema (guided decoding).
            trace_context: W3C trace headers (``traceparent``, ``tracestate``) of the
                caller's span. ``traceparent`` rides with the request into the engine
                core (``extra_args``); both go to vLLM's own tracing when it is
                enabled (``EngineConfig.otlp_traces_endpoint``).
            priority: the caller's own priority (vLLM's ``priority``: lower first). A
                strict outer key: the policy orders calls of equal priority by program
                (``Policy.sort_key``). Needs a program-aware policy (not ``fcfs``).
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
        prompt_ids = self._encode(prompt)
        sampling = Sampling.from_params(max_tokens, json_schema, **params)
        if sampling.max_tokens is None and self._max_model_len is not None:
            sampling = sampling.with_max_tokens(self._max_model_len - len(prompt_ids))
        self._check_priority(priority)
        if remaining_work is not None and (
                isinstance(remaining_work, bool) or not isinstance(remaining_work, int | float)
                or not 0 <= remaining_work < float("inf")):
            raise InvalidRequestError(f"remaining_work must be a number >= 0, got "
                                      f"{remaining_work!r}")
        for name, value in (("program_id", program_id), ("thread", thread)):
            if isinstance(value, str):
                check_text(value, name)
        one_off = program_id is None
        pid = program_id or f"call-{uuid.uuid4().hex}"
        ticket = self.table.begin_call(pid, thread)
        trace = dict(trace_context or {})
        tag = ProgramTag(pid, thread, ticket.program_service, ticket.program_wait,
                         trace.get("traceparent"), remaining_work, ticket.program_arrival,
                         ended_programs=(pid,) if one_off else ())
        call = BackendCall(ticket.call_id, tuple(prompt_ids), sampling, tag, priority, trace)
        finished = False
        try:
            async for chunk in self._run(call, ticket):
                if chunk.result is not None:
                    finished = True
                    self._record(chunk.result)
                yield chunk
        finally:
            if not finished:
                self.table.abort_call(pid, ticket.call_id)
            if one_off and pid in self.table:
                self.table.end_program(pid)

    async def _run(self, call: BackendCall, ticket: CallTicket) -> AsyncIterator[StreamChunk]:
        """Route a call; retry it elsewhere on replica faults while it has no token."""
        route = RouteInfo(call.tag.program_id, len(call.prompt_ids))
        output = _Output(time.monotonic(), ticket.call_id)
        failed: set[int] = set()
        error: ReplicaError | None = None
        for attempt in range(self.config.call_attempts):
            if attempt:
                self.totals.retried_calls += 1
                await asyncio.sleep(self.config.retry_backoff_s * 2 ** (attempt - 1))
                call = _retry(call, ticket, attempt)
            try:
                index = self.router.select(route, avoid=failed)
            except NoHealthyReplicaError as e:
                error = ReplicaError(str(e))
                continue
            try:
                async for event in self.replicas[index].run(self._with_notices(call, index)):
                    if isinstance(event, Delta):
                        output.add(event)
                        yield StreamChunk(event.text, event.token_ids, logprobs=event.logprobs)
                    else:
                        result = output.result(event, call, index, self._estimate)
                        yield StreamChunk("", (), result.finish_reason, result)
                return
            except ReplicaError as e:
                logger.warning("Replica %d (%s) failed call %s: %s", index,
                               self.replicas[index].name, ticket.call_id, e)
                check = asyncio.get_running_loop().create_task(self._check(index))
                self._checks.add(check)  # held: the loop keeps only weak references
                check.add_done_callback(self._checks.discard)
                if output.token_ids or output.text:
                    self.totals.failed_calls += 1
                    raise
                failed.add(index)
                error = e
            finally:
                self.router.done(index)
        assert error is not None
        raise error

    def _with_notices(self, call: BackendCall, replica: int) -> BackendCall:
        """The call, carrying the end notices pending for its replica."""
        ended = self.notices.take(replica)
        if not ended:
            return call
        tag = dataclasses.replace(call.tag, ended_programs=call.tag.ended_programs + ended)
        return dataclasses.replace(call, tag=tag)

    def _estimate(self, prompt_tokens: int, cached: int, tokens: int) -> CallStats:
        """A replica that reports no statistics: service from the usage, in the
        scheduler's token unit (decode tokens plus weighted uncached prompt tokens)."""
        weight = self.config.policy_config.prefill_token_weight
        return CallStats(service=tokens + weight * max(0, prompt_tokens - cached),
                         prefill_tokens=prompt_tokens - cached, decode_tokens=tokens)

    def _record(self, result: CallResult) -> None:
        self.totals.add(result)
        self.table.complete_call(result.program_id, result.call_id, result.stats,
                                 tokens=result.usage.completion_tokens,
                                 replica_id=result.replica,
                                 prompt_tokens=result.usage.prompt_tokens,
                                 cached_tokens=result.usage.cached_tokens)

    # -- input handling ---------------------------------------------------------------
    def _check_priority(self, priority: Any) -> None:
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise InvalidRequestError(f"priority must be an integer, got {priority!r}")
        if not -(2**31) <= priority < 2**31:
            raise InvalidRequestError("priority must fit in 32 bits")
        if priority and self.config.policy == "fcfs":
            raise InvalidRequestError("priority needs a program-aware policy (mlfq, plas or "
                                      "atlas); this engine runs fcfs")

    def _ensure_running(self) -> None:
        if not self._started:
            state = "closed" if self._closed else "not started (use 'async with' or start())"
            raise EngineNotRunningError(f"The engine is {state}")
        if not self.is_running:
            raise EngineNotRunningError("No replica of the engine is running")

    def _encode(self, prompt: Prompt) -> list[int]:
        tok = self._tokenizer
        if isinstance(prompt, str):
            check_text(prompt, "The prompt")
            ids = tok.encode(prompt)
        elif isinstance(prompt, Sequence) and prompt and all(isinstance(m, dict) for m in prompt):
            for m in prompt:
                if "role" not in m or "content" not in m:
                    raise InvalidRequestError(f"Chat message without role/content: {m!r}")
                for value in m.values():
                    if isinstance(value, str):
                        check_text(value, "A chat message")
            text = tok.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=True)
            ids = tok.encode(text, add_special_tokens=False)
        elif isinstance(prompt, Sequence) and prompt and all(
            isinstance(t, int) and not isinstance(t, bool) for t in prompt
        ):
            ids = list(prompt)
            vocab = len(tok)
            if any(t < 0 or t >= vocab for t in ids):
                raise InvalidRequestError(f"Prompt token ids must be in [0, {vocab})")
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
               estimate: Callable[[int, int, int], CallStats]) -> CallResult:
        cached = finish.cached_tokens
        stats = finish.stats or estimate(len(call.prompt_ids), cached, len(self.token_ids))
        ttft = None if self.first_token is None else self.first_token - self.submitted
        return CallResult(
            "".join(self.text), tuple(self.token_ids), finish.finish_reason,
            finish.stop_reason, Usage(len(call.prompt_ids), len(self.token_ids), cached),
            stats, time.monotonic() - self.submitted, ttft, call.tag.program_id,
            call.tag.thread_id, self.call_id, replica, tuple(self.logprobs),
        )


def _retry(call: BackendCall, ticket: CallTicket, attempt: int) -> BackendCall:
    """The call for another try: a fresh request id (the failed one may linger)."""
    from dataclasses import replace

    return replace(call, request_id=f"{ticket.call_id}:{attempt}")


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
        """This program's process-table entry (None once ended)."""
        return self.engine.table.get(self.id)

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
