"""The embedded engine: an async API over vLLM's ``AsyncLLM`` with program scheduling.

Example::

    async with AutellixEngine(EngineConfig(model="tiny", policy="atlas")) as eng:
        async with eng.program() as prog:
            out = await prog.generate("Hello", max_tokens=32)
        print(eng.programs())

vLLM's engine core runs in a child process started with ``spawn``; that child does not
re-run the caller's ``__main__`` (``autellix_engine.main_guard``), so a plain script
needs no ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from autellix_engine._vllm_setup import build_async_llm, is_engine_dead
from autellix_engine.config import EngineConfig
from autellix_engine.errors import (
    AutellixError,
    EngineNotRunningError,
    InvalidRequestError,
    PromptTooLongError,
)
from autellix_engine.models import resolve_model
from autellix_engine.policy import ProcessTable, ProgramSnapshot, create_policy
from autellix_engine.policy.wire import CallStats, ProgramTag
from autellix_engine.results import CallResult, CallTimings, CallTotals, StreamChunk, Usage

logger = logging.getLogger(__name__)

#: Default ``max_tokens`` of a call (vLLM's own default, 16, is too short for chat).
DEFAULT_MAX_TOKENS = 256
#: Sampling parameters a call accepts (passed to ``vllm.SamplingParams``).
SAMPLING_KEYS = frozenset(
    {
        "temperature", "top_p", "top_k", "min_p", "seed", "stop", "stop_token_ids",
        "ignore_eos", "presence_penalty", "frequency_penalty", "repetition_penalty",
        "min_tokens", "logit_bias", "include_stop_str_in_output",
    }
)

Prompt = str | Sequence[dict[str, Any]] | Sequence[int]


class AutellixEngine:
    """An embedded vLLM engine whose scheduler serves programs, not isolated calls.

    Use as an async context manager, or call :meth:`start` and :meth:`aclose`.
    Keyword arguments override fields of ``config``.
    """

    def __init__(
        self, config: EngineConfig | None = None, *, table: ProcessTable | None = None,
        replica_id: int | None = None, **overrides: Any,
    ) -> None:
        base = config or EngineConfig()
        if overrides:
            base = EngineConfig(**{**base.__dict__, **overrides})
        self.config = base
        self.policy = create_policy(base.policy, base.policy_config)
        # A pool of replicas passes one shared table: a program's service counts
        # wherever its calls ran.
        if table is None:
            table = ProcessTable(
                self.policy.updated_program_service, ttl_s=base.policy_config.program_ttl_s
            )
        self.table = table
        self.replica_id = replica_id
        self.totals = CallTotals()  # over this engine's finished calls
        self._llm: Any = None
        self._tokenizer: Any = None
        self._gc_task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._max_model_len: int | None = None  # the engine's, known once started

    # -- lifecycle --------------------------------------------------------------------
    async def start(self) -> AutellixEngine:
        """Prepare the model and start vLLM (its engine core runs in a child process)."""
        if self._llm is not None:
            return self
        if self._closed:
            raise EngineNotRunningError("This engine was closed; create a new one")
        model = await asyncio.to_thread(resolve_model, self.config.model)
        self._llm = await asyncio.to_thread(build_async_llm, self.config, model)
        self._tokenizer = self._llm.get_tokenizer()
        self._max_model_len = self._llm.model_config.max_model_len
        self._loop = asyncio.get_running_loop()
        self._gc_task = asyncio.create_task(self._collect_programs())
        return self

    async def aclose(self) -> None:
        """Stop the engine; in-flight calls fail with ``EngineNotRunningError``."""
        self._closed = True
        if self._gc_task is not None:
            self._gc_task.cancel()
            self._gc_task = None
        if self._llm is not None:
            llm, self._llm = self._llm, None
            # On the loop thread: vLLM's output handler must not run while the engine
            # core goes down, or it logs a spurious EngineDeadError.
            llm.shutdown()
            # AsyncLLM.__del__ calls shutdown() again, which fails noisily when it runs
            # at interpreter exit (module globals already gone): it is done already.
            llm.shutdown = _noop
            del llm
            gc.collect()

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

    @property
    def tokenizer(self) -> Any:
        """The model's Hugging Face tokenizer (available once started)."""
        self._ensure_running()
        return self._tokenizer

    @property
    def model_name(self) -> str:
        return self.config.model

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the engine runs on (its calls must be made there)."""
        return self._loop

    @property
    def is_running(self) -> bool:
        return self._llm is not None and not self._llm.errored

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
        return self.table.end_program(program_id)

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
        trace_context: dict[str, str] | None = None, priority: int = 0, **params: Any,
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
            **params: sampling parameters (``temperature``, ``top_p``, ``seed``,
                ``stop``, ``ignore_eos``, ... see ``SAMPLING_KEYS``).

        Raises:
            InvalidRequestError: bad prompt or sampling values.
            PromptTooLongError: the prompt leaves no room in the context.
            ProgramEndedError: the program has ended.
            EngineNotRunningError: the engine is not running.
        """
        self._ensure_running()
        prompt_ids = self._encode(prompt)
        sampling = self._sampling_params(max_tokens, json_schema, params)
        self._check_priority(priority)
        one_off = program_id is None
        pid = program_id or f"call-{uuid.uuid4().hex}"
        ticket = self.table.begin_call(pid, thread, replica_id=self.replica_id)
        traceparent = (trace_context or {}).get("traceparent")
        tag = ProgramTag(pid, thread, ticket.program_service, ticket.program_wait, traceparent)
        sampling.extra_args = tag.to_extra_args()
        finished = False
        try:
            trace_headers = trace_context if self.config.otlp_traces_endpoint else None
            async for chunk in self._run(prompt_ids, sampling, ticket.call_id, tag, trace_headers,
                                         priority):
                if chunk.result is not None:
                    finished = True
                    self._record(chunk.result)
                yield chunk
        finally:
            if not finished:
                self.table.abort_call(pid, ticket.call_id)
            if one_off and pid in self.table:
                self.table.end_program(pid)

    async def _run(
        self, prompt_ids: list[int], sampling: Any, call_id: str, tag: ProgramTag,
        trace_headers: dict[str, str] | None, priority: int,
    ) -> AsyncIterator[StreamChunk]:
        from vllm.exceptions import VLLMClientError

        submitted = time.monotonic()
        first_token: float | None = None
        token_ids: list[int] = []
        text: list[str] = []
        gen = self._llm.generate(
            {"prompt_token_ids": prompt_ids}, sampling, call_id, trace_headers=trace_headers,
            priority=priority,
        )
        try:
            async for out in gen:
                completion = out.outputs[0]
                if completion.token_ids and first_token is None:
                    first_token = time.monotonic()
                token_ids.extend(completion.token_ids)
                text.append(completion.text)
                if not out.finished:
                    yield StreamChunk(completion.text, tuple(completion.token_ids))
                    continue
                stats = CallStats.from_transfer_params(out.kv_transfer_params)
                timings = _timings(submitted, first_token, stats)
                usage = Usage(len(prompt_ids), len(token_ids), out.num_cached_tokens or 0)
                result = CallResult(
                    "".join(text), tuple(token_ids), completion.finish_reason or "stop",
                    completion.stop_reason, usage, timings, tag.program_id, tag.thread_id,
                    call_id,
                )
                yield StreamChunk(
                    completion.text, tuple(completion.token_ids), result.finish_reason, result
                )
        except VLLMClientError as e:
            raise InvalidRequestError(str(e)) from e
        except AutellixError:
            raise
        except Exception as e:
            if is_engine_dead(e) or self._llm is None:
                raise EngineNotRunningError(f"The engine stopped: {e}") from e
            raise
        finally:
            await gen.aclose()

    def _record(self, result: CallResult) -> None:
        self.totals.add(result)
        t = result.timings
        self.table.complete_call(
            result.program_id, result.call_id, service=t.service,
            wait=t.wait,
            queue_wait_s=t.queue_wait_s, execution_s=t.execution_s,
            tokens=result.usage.completion_tokens,
            preemptions=t.preemptions,
        )

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
        if self._llm is None:
            state = "closed" if self._closed else "not started (use 'async with' or start())"
            raise EngineNotRunningError(f"The engine is {state}")
        if self._llm.errored:
            raise EngineNotRunningError("The engine core process has died")

    def _encode(self, prompt: Prompt) -> list[int]:
        tok = self._tokenizer
        if isinstance(prompt, str):
            ids = tok.encode(prompt)
        elif isinstance(prompt, Sequence) and prompt and all(isinstance(m, dict) for m in prompt):
            for m in prompt:
                if "role" not in m or "content" not in m:
                    raise InvalidRequestError(f"Chat message without role/content: {m!r}")
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

    def _sampling_params(self, max_tokens: int | None, json_schema: dict | None, params: dict):
        from vllm import SamplingParams
        from vllm.exceptions import VLLMClientError
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

        unknown = set(params) - SAMPLING_KEYS
        if unknown:
            msg = f"Unknown sampling parameters: {sorted(unknown)} (valid: {sorted(SAMPLING_KEYS)})"
            raise InvalidRequestError(msg)
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise InvalidRequestError(f"max_tokens must be a positive int, got {max_tokens!r}")
        structured = None
        if json_schema is not None:
            if not isinstance(json_schema, dict):
                raise InvalidRequestError("json_schema must be a dict (a JSON schema)")
            structured = StructuredOutputsParams(json=json_schema)
        try:
            return SamplingParams(
                max_tokens=max_tokens, output_kind=RequestOutputKind.DELTA,
                structured_outputs=structured, **params,
            )
        except (ValueError, TypeError, VLLMClientError) as e:
            raise InvalidRequestError(f"Invalid sampling parameters: {e}") from e


def _noop(*args: Any, **kwargs: Any) -> None:
    return None


def _timings(submitted: float, first_token: float | None, stats: CallStats | None) -> CallTimings:
    now = time.monotonic()
    ttft = None if first_token is None else first_token - submitted
    if stats is None:  # e.g. a call aborted inside the engine
        return CallTimings(now - submitted, ttft, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0, 0, 0)
    return CallTimings(
        latency_s=now - submitted, time_to_first_token_s=ttft,
        queue_wait_s=stats.queue_wait_s, execution_s=stats.execution_s,
        prefill_s=stats.prefill_s, decode_s=stats.decode_s,
        service=stats.service, wait=stats.wait, preemptions=stats.preemptions,
        start_level=stats.start_level, level=stats.level,
        swaps_out=stats.swaps_out, swaps_in=stats.swaps_in,
        swap_fallbacks=stats.swap_fallbacks, swapped_blocks=stats.swapped_blocks,
        swap_s=stats.swap_s, host_pool_used_blocks=stats.host_pool_used_blocks,
    )


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
