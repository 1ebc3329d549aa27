"""Results of engine calls."""

from __future__ import annotations

from dataclasses import dataclass

from autellix_engine.core.stats import CallStats


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
class TokenLogprob:
    """The log probability of one generated token, and of the most likely ones there."""

    token_id: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()  # (token id, logprob), most likely first


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call read from a call's output by a tool parser."""

    id: str
    name: str
    arguments: str  # JSON text, as OpenAI's API carries it


@dataclass(frozen=True, slots=True)
class CallResult:
    """The complete output of one call.

    ``latency_s`` and ``time_to_first_token_s`` are measured by the front end from
    submission; ``stats`` is the scheduler's record of the call inside the engine
    (the same record for embedded and remote replicas).
    """

    text: str
    token_ids: tuple[int, ...]
    finish_reason: str  # "stop", "length" or "abort"
    stop_reason: int | str | None  # the stop string or token that ended it, if any
    usage: Usage
    stats: CallStats
    latency_s: float  # submission -> last token
    time_to_first_token_s: float | None  # submission -> first token (None: no token)
    program_id: str
    thread_id: str
    call_id: str
    replica: int = 0  # index of the replica that ran it
    logprobs: tuple[TokenLogprob, ...] = ()  # per token, when the call asked for them
    policy: str = ""  # the policy that scheduled it (a remote server's own)
    tool_calls: tuple[ToolCall, ...] = ()  # parsed by a remote server (native tools)


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """A piece of a streamed call. The last chunk has ``finish_reason`` and ``result``."""

    text: str  # new text since the previous chunk
    token_ids: tuple[int, ...]  # new token ids since the previous chunk
    finish_reason: str | None = None
    result: CallResult | None = None  # the whole call, on the last chunk only
    logprobs: tuple[TokenLogprob, ...] = ()  # of this chunk's tokens, when asked for
