"""The policy's state of an active call (its statistics: ``autellix_engine.core.stats``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from autellix_engine.core.stats import CallStats


@dataclass(slots=True)
class CallState:
    """What a policy knows about one active LLM call.

    ``wait``/``service`` count since arrival or the last promotion (the paper's W_c,
    T_c); the call's totals are in ``stats``.
    """

    call_id: str
    program_id: str
    thread_id: str
    arrival: float  # arrival time (vLLM: the request's arrival_time): FCFS within a queue
    seq: int  # arrival order; the final tie-breaker
    start_service: float = 0.0  # program service inherited at arrival (its priority)
    program_wait: float = 0.0  # W_p: program's accumulated wait at arrival
    client_priority: int = 0  # the client's own priority (vLLM's): strict outer key
    remaining_work: float = 0.0  # clairvoyant hint: program's remaining output tokens (srpt)
    #: When the program began (its first call; same clock as ``arrival``). PLAS and
    #: ATLAS serve a queue in program order; None: the call's own arrival.
    program_arrival: float | None = None
    level: int = 0  # current queue (0 = highest priority)
    quantum_left: float = math.inf  # service left before demotion
    wait: float = 0.0  # W_c: wait since arrival or last promotion
    service: float = 0.0  # T_c: service since arrival or last promotion
    stats: CallStats = field(default_factory=CallStats)
