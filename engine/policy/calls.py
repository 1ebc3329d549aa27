"""Per-call scheduling state (a *thread* of a program while its call is active)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(slots=True)
class CallState:
    """What a policy knows about one active LLM call.

    Units: ``service``/``wait`` fields are in the configured service unit
    (tokens or seconds, see ``PolicyConfig``); ``*_s`` fields are wall seconds.
    """

    call_id: str
    program_id: str
    thread_id: str
    arrival: float  # engine clock when the call arrived
    seq: int  # arrival order; the final tie-breaker
    start_service: float = 0.0  # program service inherited at arrival (its priority)
    program_wait: float = 0.0  # W_p: program's accumulated wait at arrival
    client_priority: int = 0  # the client's own priority (vLLM's): strict outer key
    level: int = 0  # current queue (0 = highest priority)
    start_level: int = 0  # queue on arrival
    quantum_left: float = math.inf  # service left before demotion
    wait: float = 0.0  # W_c: wait since arrival or last promotion
    service: float = 0.0  # T_c: service since arrival or last promotion
    total_wait: float = 0.0  # all wait of this call (never reset)
    total_service: float = 0.0  # all service of this call (never reset)
    queue_wait_s: float = 0.0  # wall seconds spent unscheduled
    execution_s: float = 0.0  # wall seconds of steps that scheduled this call
    prefill_s: float = 0.0  # of which prefill (or recompute) steps
    prefill_tokens: int = 0  # prompt (and recomputed) tokens computed
    decode_tokens: int = 0  # tokens decoded one per step
    promotions: int = 0  # anti-starvation moves to the top queue
    demotions: int = 0  # quantum expiries
