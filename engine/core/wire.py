"""What travels between the front end and the engine-core scheduler.

Program information rides on each request in ``SamplingParams.extra_args`` (flat keys,
so the same names work as ``vllm_xargs`` in a stock vLLM server's request body). Call
statistics (``autellix_engine.core.calls.CallStats.to_dict``) come back on the
finished request's ``kv_transfer_params`` under :data:`STATS_KEY`: it is the one
per-request dict vLLM carries from the engine core to the front end's ``RequestOutput``
unchanged (and, through ``autellix_engine.extension.stream_stats``, to a stock ``vllm serve``'s
streamed completions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# --- request -> scheduler (SamplingParams.extra_args keys) -------------------
PROGRAM_ID = "program_id"  # program the call belongs to; absent: the call is its own
THREAD_ID = "thread_id"  # thread label within the program
PROGRAM_SERVICE = "program_service"  # program's attained service at submission
PROGRAM_WAIT = "program_wait"  # program's accumulated waiting (W_p) at submission
TRACEPARENT = "traceparent"  # W3C trace context of the caller's span, if any
REMAINING_WORK = "remaining_work"  # clairvoyant hint for the srpt yardstick policy
PROGRAM_ARRIVAL = "program_arrival"  # when the program began (time.time() seconds)
#: Programs that have ended (their KV need not be retained), carried by the next request
#: to each replica: a retained program's KV only matters to later requests, so the
#: notice arrives before anything could want it back. A call that lists its own
#: program is that program's last (a one-off call).
ENDED_PROGRAMS = "ended_programs"

# --- scheduler -> front end (RequestOutput.kv_transfer_params keys) -----------
STATS_KEY = "autellix_stats"  # the call's CallStats
#: The engine's gauges as the call ended (``EngineGauges`` fields: swap pool and
#: retention), kept per replica by the front end: a fact about the engine, not the call.
GAUGES_KEY = "autellix_gauges"
# --- front end -> vLLM processes (names vLLM loads, settings it carries) -------
#: Our scheduler classes under short, stable names (``--scheduler-cls``): without
#: async scheduling (the CPU build), and with it (vLLM's GPU default).
SYNC_SCHEDULER = "autellix_engine.AutellixScheduler"
ASYNC_SCHEDULER = "autellix_engine.AutellixAsyncScheduler"
#: Our KV connector, registered under this name by our vLLM plugin.
SWAP_CONNECTOR = "AutellixSwapConnector"
SWAP_CONNECTOR_MODULE = "autellix_engine.extension.swap_connector"
#: ``kv_connector_extra_config`` key of the host swap pool's size in bytes.
POOL_BYTES_KEY = "host_pool_bytes"
#: Key of the scheduler's settings in ``VllmConfig.additional_config``.
SCHEDULER_CONFIG_KEY = "autellix"


def scheduler_settings(policy: str, policy_config: dict[str, Any],
                       kv_retention: bool = False) -> dict[str, Any]:
    """The ``additional_config`` entry that configures the scheduler in the engine
    core: ``{"autellix": {"policy", "policy_config", "kv_retention"}}``."""
    return {SCHEDULER_CONFIG_KEY: {"policy": policy, "policy_config": policy_config,
                                   "kv_retention": kv_retention}}


# --- server -> client (a response header) --------------------------------------
#: Response header naming the policy that scheduled a request.
POLICY_HEADER = "X-Autellix-Policy"


@dataclass(frozen=True, slots=True)
class ProgramTag:
    """Program identity and priority inputs of one request."""

    program_id: str
    thread_id: str
    program_service: float | None = None  # None: the scheduler uses its local table
    program_wait: float | None = None
    traceparent: str | None = None
    remaining_work: float | None = None  # the program's remaining output tokens (srpt)
    program_arrival: float | None = None  # when the program began (PLAS/ATLAS order)
    ended_programs: tuple[str, ...] = ()  # programs ended since the last request

    @property
    def is_last_call(self) -> bool:
        """The program ends with this call (its KV is not retained)."""
        return self.program_id in self.ended_programs

    def to_extra_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {PROGRAM_ID: self.program_id, THREAD_ID: self.thread_id}
        if self.traceparent:
            args[TRACEPARENT] = self.traceparent
        if self.program_service is not None:
            args[PROGRAM_SERVICE] = float(self.program_service)
        if self.program_wait is not None:
            args[PROGRAM_WAIT] = float(self.program_wait)
        if self.remaining_work is not None:
            args[REMAINING_WORK] = float(self.remaining_work)
        if self.program_arrival is not None:
            args[PROGRAM_ARRIVAL] = float(self.program_arrival)
        if self.ended_programs:
            args[ENDED_PROGRAMS] = list(self.ended_programs)
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
            remaining_work=_as_float(extra.get(REMAINING_WORK)),
            program_arrival=_as_float(extra.get(PROGRAM_ARRIVAL)),
            ended_programs=_as_ids(extra.get(ENDED_PROGRAMS)),
        )


def _as_float(value: Any) -> float | None:
    try:
        return None if value is None else max(0.0, float(value))
    except (TypeError, ValueError):
        return None  # a malformed value must not break the engine: treat as absent


def _as_ids(value: Any) -> tuple[str, ...]:
    """A list of program ids; anything else (a malformed notice) is ignored."""
    if not isinstance(value, list | tuple):
        return ()
    return tuple(str(v) for v in value if isinstance(v, str | int) and not isinstance(v, bool))
