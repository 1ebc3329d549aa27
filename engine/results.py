"""Results of engine calls."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one call."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0  # prompt tokens served from the prefix cache

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class CallTimings:
    """Where a call's time went.

    ``latency_s`` and ``time_to_first_token_s`` are measured by the front end from
    submission; the rest are the scheduler's accounting inside the engine core.
    """

    latency_s: float  # submission -> last token
    time_to_first_token_s: float | None  # submission -> first token (None: no token)
    queue_wait_s: float  # unscheduled time in the engine (queued, preempted)
    execution_s: float  # engine steps that ran the call
    prefill_s: float  # of which steps that computed its prompt (or recomputed it)
    decode_s: float  # of which steps that decoded one of its tokens
    service: float  # attained service of the call, in the policy's service unit
    wait: float  # waiting, in the service unit (engine steps for "tokens")
    preemptions: int  # times the call was evicted from the running batch
    start_level: int  # queue on arrival (0 = highest priority)
    level: int  # queue at completion
    swaps_out: int = 0  # preemptions whose KV went to the host pool (swap mode)
    swaps_in: int = 0  # resumptions that restored it without recomputation
    swap_fallbacks: int = 0  # preemptions recomputed because the host pool was full
    swapped_blocks: int = 0  # KV blocks swapped out, summed over its swaps
    swap_s: float = 0.0  # seconds spent copying this call's KV to and from the host
    host_pool_used_blocks: int = 0  # engine-wide: swap pool blocks in use as it ended


@dataclass(frozen=True, slots=True)
class CallResult:
    """The complete output of one call."""

    text: str
    token_ids: tuple[int, ...]
    finish_reason: str  # "stop", "length" or "abort"
    stop_reason: int | str | None  # the stop string or token that ended it, if any
    usage: Usage
    timings: CallTimings
    program_id: str
    thread_id: str
    call_id: str


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """A piece of a streamed call. The last chunk has ``finish_reason`` and ``result``."""

    text: str  # new text since the previous chunk
    token_ids: tuple[int, ...]  # new token ids since the previous chunk
    finish_reason: str | None = None
    result: CallResult | None = None  # the whole call, on the last chunk only


@dataclass(slots=True)
class CallTotals:
    """Running totals over an engine's finished calls (for benchmarks and /metrics)."""

    calls: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    prompt_tokens: int = 0
    preemptions: int = 0
    swaps_out: int = 0
    swaps_in: int = 0
    swap_fallbacks: int = 0
    swapped_blocks: int = 0
    swap_s: float = 0.0
    host_pool_used_blocks: int = 0  # as last reported

    def add(self, result: CallResult) -> None:
        t, u = result.timings, result.usage
        self.calls += 1
        self.prompt_tokens += u.prompt_tokens
        self.completion_tokens += u.completion_tokens
        self.cached_tokens += u.cached_tokens
        self.preemptions += t.preemptions
        self.swaps_out += t.swaps_out
        self.swaps_in += t.swaps_in
        self.swap_fallbacks += t.swap_fallbacks
        self.swapped_blocks += t.swapped_blocks
        self.swap_s += t.swap_s
        self.host_pool_used_blocks = t.host_pool_used_blocks

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
