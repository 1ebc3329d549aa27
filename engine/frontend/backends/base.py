"""The back-end interface: what the front end needs from a place that runs calls.

The front end (``autellix_engine.frontend.engine.AutellixEngine``) owns everything about programs:
the process table, tokenization, validation, routing, health and retries. A back end
only runs one prepared call and reports what happened, in two kinds of events:
:class:`Delta` (new tokens) and, last, :class:`Finish`.

Errors a back end raises: ``InvalidRequestError`` when the request is at fault (an HTTP
4xx: the replica stays healthy, the call is not retried); ``ReplicaError`` for anything
else (5xx, reset, timeout, dead engine), which the front end may retry elsewhere.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from autellix_engine.core.stats import CallStats, EngineGauges
from autellix_engine.core.wire import ProgramTag
from autellix_engine.frontend.results import TokenLogprob
from autellix_engine.frontend.sampling import Sampling


@dataclass(frozen=True, slots=True)
class NativeSampling:
    """A call that vLLM's own OpenAI layer prepared: its validated ``SamplingParams``
    and its rendered engine input, passed to an embedded engine as they are (so vLLM's
    serving code gets back exactly the ``RequestOutput`` it expects)."""

    params: Any  # vllm.SamplingParams
    engine_input: Mapping[str, Any]  # vllm.inputs.EngineInput

    @property
    def logprobs(self) -> int | None:
        return None  # the raw outputs carry them, in vLLM's form

    def vllm_params(self, extra_args: dict[str, Any]) -> Any:
        """A copy of the params carrying ``extra_args`` (our program tag) beside the
        request's own (``vllm_xargs``)."""
        params = self.params.clone()
        params.extra_args = {**(params.extra_args or {}), **extra_args}
        return params


@dataclass(frozen=True, slots=True)
class BackendCall:
    """One prepared call: tokenized, validated, tagged with its program."""

    request_id: str  # unique per attempt (a retry gets a new one)
    prompt_ids: tuple[int, ...]
    sampling: Sampling | NativeSampling  # max_tokens always set (the front end resolves None)
    tag: ProgramTag
    priority: int = 0
    trace_context: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Delta:
    """New output of a running call."""

    text: str
    token_ids: tuple[int, ...]
    logprobs: tuple[TokenLogprob, ...] = ()  # one per token, when the call asked for them
    raw: Any = None  # vLLM's RequestOutput, for a NativeSampling call (embedded only)


@dataclass(frozen=True, slots=True)
class Finish:
    """The end of a call."""

    finish_reason: str
    stop_reason: int | str | None
    cached_tokens: int
    stats: CallStats | None  # the scheduler's record; None: this replica sends none


@runtime_checkable
class Backend(Protocol):
    """A place that runs calls: an embedded engine or a remote replica."""

    #: Where it runs, for logs and errors ("embedded", a URL).
    name: str
    #: The model's Hugging Face tokenizer (once started).
    tokenizer: Any
    #: The context length in tokens (once started; None: unknown).
    max_model_len: int | None
    #: Its engine's state as last reported (what it does not report stays 0).
    gauges: EngineGauges

    @property
    def is_running(self) -> bool:
        """Started and, as far as last seen, able to run calls."""

    async def start(self) -> None:
        """Start (or connect); raises ``EngineNotRunningError`` when it cannot."""

    async def aclose(self) -> None:
        """Stop; calls in flight fail with ``ReplicaError``."""

    async def check_health(self) -> bool:
        """Probe the back end now; the answer also updates :attr:`is_running`."""

    async def revive(self) -> bool:
        """Try to bring back a back end that failed its health check (an embedded
        engine starts afresh); False when it cannot."""

    def run(self, call: BackendCall) -> AsyncIterator[Delta | Finish]:
        """Run one call: its deltas, then one :class:`Finish`."""
