"""What travels between the front end and the engine-core scheduler.

Program information rides on each request in ``SamplingParams.extra_args`` (flat keys,
so the same names work as ``vllm_xargs`` in a stock vLLM server's request body). Call
statistics come back on the finished request's ``kv_transfer_params`` under
:data:`STATS_KEY`: it is the one per-request dict vLLM carries from the engine core to
the front end's ``RequestOutput`` unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# --- request -> scheduler (SamplingParams.extra_args keys) -------------------
PROGRAM_ID = "program_id"  # program the call belongs to; absent: the call is its own
THREAD_ID = "thread_id"  # thread label within the program
PROGRAM_SERVICE = "program_service"  # program's attained service at submission
PROGRAM_WAIT = "program_wait"  # program's accumulated waiting (W_p) at submission
TRACEPARENT = "traceparent"  # W3C trace context of the caller's span, if any

# --- scheduler -> front end (RequestOutput.kv_transfer_params key) ------------
STATS_KEY = "autellix_stats"


@dataclass(frozen=True, slots=True)
class ProgramTag:
    """Program identity and priority inputs of one request."""

    program_id: str
    thread_id: str
    program_service: float | None = None  # None: the scheduler uses its local table
    program_wait: float | None = None
    traceparent: str | None = None

    def to_extra_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {PROGRAM_ID: self.program_id, THREAD_ID: self.thread_id}
        if self.traceparent:
            args[TRACEPARENT] = self.traceparent
        if self.program_service is not None:
            args[PROGRAM_SERVICE] = float(self.program_service)
        if self.program_wait is not None:
            args[PROGRAM_WAIT] = float(self.program_wait)
        return args

    @classmethod
    def from_extra_args(cls, extra: dict[str, Any] | None, request_id: str,
                        session_id: str | None = None) -> ProgramTag:
        """Read a tag. The program is our ``program_id`` key, else vLLM's session id
        (``Request.session_id``), else the request is a one-call program of its own."""
        extra = extra or {}
        pid = extra.get(PROGRAM_ID)
        if pid in (None, ""):
            pid = session_id or request_id
        pid = str(pid)
        return cls(
            program_id=pid,
            thread_id=str(extra.get(THREAD_ID, "main")),
            program_service=_as_float(extra.get(PROGRAM_SERVICE)),
            program_wait=_as_float(extra.get(PROGRAM_WAIT)),
            traceparent=str(extra[TRACEPARENT]) if extra.get(TRACEPARENT) else None,
        )


def _as_float(value: Any) -> float | None:
    try:
        return None if value is None else max(0.0, float(value))
    except (TypeError, ValueError):
        return None  # a malformed value must not break the engine: treat as absent


@dataclass(frozen=True, slots=True)
class CallStats:
    """Scheduler-side facts about a finished call."""

    service: float  # attained service of the call (service unit)
    wait: float  # waiting of the call (service unit)
    queue_wait_s: float  # wall seconds unscheduled (queued or preempted)
    execution_s: float  # wall seconds of the engine steps that scheduled it
    prefill_s: float  # of which steps that computed prompt (or recomputed) tokens
    decode_s: float  # of which steps that decoded one token
    preemptions: int
    level: int  # queue at finish
    start_level: int  # queue on arrival
    promotions: int
    demotions: int
    prefill_tokens: int
    decode_tokens: int
    swaps_out: int = 0  # preemptions that swapped the KV out (swap mode)
    swaps_in: int = 0  # resumptions that swapped it back in
    swap_fallbacks: int = 0  # preemptions recomputed because the host pool was full
    swapped_blocks: int = 0  # KV blocks swapped out, summed over its swaps
    swap_s: float = 0.0  # seconds the worker spent copying this call's KV
    host_pool_used_blocks: int = 0  # engine-wide: swap pool blocks in use as it ended

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_transfer_params(cls, params: dict[str, Any] | None) -> CallStats | None:
        data = (params or {}).get(STATS_KEY)
        return None if data is None else cls(**data)
