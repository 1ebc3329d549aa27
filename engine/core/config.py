"""Configuration of the program-aware scheduling policies (pure: no vLLM import).

The Autellix paper (arXiv 2502.13965) gives no numbers for its knobs: the number of
queues K, the queue boundaries, the quanta, the starvation threshold beta or the unit of
service. Every default below says where it comes from.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import asdict, dataclass, field
from enum import Enum


class PolicyKind(str, Enum):
    """Scheduling policy names, as accepted by ``EngineConfig.policy`` and the CLI."""

    FCFS = "fcfs"  # stock vLLM: first come, first served; the baseline
    MLFQ = "mlfq"  # call-level MLFQ (FastServe-style): the paper's baseline
    PLAS = "plas"  # program-level attained service (single-threaded programs)
    ATLAS = "atlas"  # critical-path attained service (multi-threaded programs)
    SRPT = "srpt"  # clairvoyant: shortest remaining program work first (a yardstick)


#: The policy when nothing names one (``EngineConfig.policy``, and a ``vllm serve
#: --scheduler-cls`` without settings): ATLAS covers single- and multi-threaded
#: programs and equals PLAS on single-threaded ones.
DEFAULT_POLICY = PolicyKind.ATLAS.value
QUEUE_ORDERS = ("program", "call")


class ServiceUnit(str, Enum):
    """How attained service (and, in the same unit, waiting) is measured."""

    # Service: decode tokens + prefill_token_weight * prefill tokens computed.
    # Waiting: one unit per engine step a call spends unscheduled (a running call
    # earns one decode token per step, so the two are comparable for beta).
    TOKENS = "tokens"
    # Service: wall seconds of every engine step that scheduled the call (the paper's
    # "model-executor time"). Waiting: wall seconds not scheduled.
    SECONDS = "seconds"


def parse_policy(name: str | PolicyKind) -> PolicyKind:
    """Return the policy for ``name``; raise ``ValueError`` naming the valid ones."""
    try:
        return PolicyKind(name)
    except ValueError:
        valid = ", ".join(p.value for p in PolicyKind)
        msg = f"Unknown scheduling policy: {name!r} (valid: {valid})"
        raise ValueError(msg) from None


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """Knobs of the multi-level queues, service accounting and anti-starvation.

    Defaults and their sources:

    * ``service_unit="tokens"``: deterministic and machine-independent, so the same
      workload gets the same schedule on a 2-core CPU, a GPU and in the simulator. The
      third-party V1 port kungfu-team/autellix also counts decode steps. ``"seconds"``
      is the paper's literal definition (model-executor time).
    * ``prefill_token_weight=1/16``: a prefill token costs far less than a decode step
      (one forward pass serves a whole chunk). Measured on this project's 2-core CPU
      with ``benchmarks/prefill_cost.py``: 1/19.5 for the default ``smollm2`` model and
      1/69 for ``tiny`` (docs/benchmarks.md); 1/16 is a round value near the default
      model's. On GPUs the ratio is smaller still: lower it there.
    * ``num_queues=8``, ``first_boundary=64``, ``boundary_growth=2``: geometric queue
      bounds [0,64), [64,128), [128,256), ... [4096, inf) tokens. The doubling is
      FastServe's and kungfu-team's scheme; the first bound of 64 tokens is ours,
      raised from kungfu-team's 2 so that one short call (the paper's chatbot and ReAct
      calls produce 34-277 tokens) keeps a program in the top queues, and K=8 lets the
      last bound (4096) sit above one typical call but far below a LATS program
      (~160 calls x ~73 tokens).
    * ``quanta``: by default the width of each queue (64, 64, 128, 256, ...; the last
      queue never demotes), so a call demotes about when its program's service would
      cross the next bound. This is FastServe's doubling quanta.
    * ``beta=8.0``: kungfu-team/autellix and Crystalclear9/Autellix both use 8.
    * ``starvation_floor=1.0``: the ratio's denominator is floored at one unit so a new
      program (no service yet) does not divide by zero (kungfu-team does the same).
    * ``max_preemptions_per_step=None``: no cap, as the paper's strict-priority batch
      rebuild implies; set a small number to limit churn.
    * ``decision_interval_steps=1``: multi-step scheduling (paper section 5) re-ranks
      the queues and preempts once every N engine steps; in between, free slots are
      filled from the waiting queue in the last decided order (vLLM's own admission)
      and nothing is preempted for priority. The paper gives no N; 1 is exact
      (priorities act at once); docs/benchmarks.md measures N=1 against larger N.
    * ``program_ttl_s=600``: programs with no active call and no activity for 10
      minutes are collected, for clients that never end them; it is also the idle
      timeout of a LangGraph thread's program (a conversation): longer than the
      think time between the turns of an active conversation (seconds to minutes),
      shorter than a break. A conversation idle longer starts afresh (attained service
      0). Within it, attained service is kept across turns, as the paper's rule has it
      for a program (its service is all it ever received): a long conversation ranks
      below fresh ones whatever the gaps. Collecting a program also frees what the
      engines retained for it (``kv_retention``).
    * ``max_programs=100_000``: the most programs the process table holds; beyond it
      the least recently active idle ones are collected first (a bound on memory, as
      one entry per conversation or run would otherwise grow without one).
    * ``queue_order="program"``: PLAS and ATLAS serve a queue FCFS by program arrival
      (then call arrival), so an older program's next call goes before a newer
      program's and fewer programs are in flight; ``"call"`` orders by call arrival
      alone (the paper's literal "FCFS within a queue"). Measured in the simulator,
      docs/benchmarks.md ("Closing the gap").
    """

    service_unit: ServiceUnit = ServiceUnit.TOKENS
    prefill_token_weight: float = 1.0 / 16.0
    num_queues: int = 8
    first_boundary: float = 64.0
    boundary_growth: float = 2.0
    quanta: tuple[float, ...] | None = None
    beta: float = 8.0
    starvation_floor: float = 1.0
    max_preemptions_per_step: int | None = None
    decision_interval_steps: int = 1
    program_ttl_s: float = 600.0
    max_programs: int = 100_000
    queue_order: str = "program"
    boundaries: tuple[float, ...] = field(init=False)
    resolved_quanta: tuple[float, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "service_unit", ServiceUnit(self.service_unit))
        if self.num_queues < 1:
            raise ValueError(f"num_queues must be >= 1, got {self.num_queues}")
        if self.first_boundary <= 0 or self.boundary_growth <= 1:
            msg = "first_boundary must be > 0 and boundary_growth > 1"
            raise ValueError(msg)
        if self.beta <= 0 or self.starvation_floor <= 0:
            raise ValueError("beta and starvation_floor must be > 0")
        if self.program_ttl_s <= 0 or self.max_programs < 1:
            raise ValueError("program_ttl_s must be > 0 and max_programs >= 1")
        if self.prefill_token_weight < 0:
            raise ValueError("prefill_token_weight must be >= 0")
        if self.queue_order not in QUEUE_ORDERS:
            msg = f"queue_order must be one of {', '.join(QUEUE_ORDERS)}, got {self.queue_order!r}"
            raise ValueError(msg)
        if self.decision_interval_steps < 1:
            msg = f"decision_interval_steps must be >= 1, got {self.decision_interval_steps}"
            raise ValueError(msg)
        bounds = tuple(
            self.first_boundary * self.boundary_growth**i for i in range(self.num_queues - 1)
        )
        object.__setattr__(self, "boundaries", bounds)
        if self.quanta is None:
            lows = (0.0, *bounds)
            widths = [hi - lo for lo, hi in zip(lows, bounds, strict=False)]
            quanta = (*widths, math.inf)
        else:
            quanta = tuple(float(q) for q in self.quanta)
            if len(quanta) != self.num_queues or any(q <= 0 for q in quanta):
                msg = f"quanta must be {self.num_queues} positive numbers, got {self.quanta}"
                raise ValueError(msg)
        object.__setattr__(self, "resolved_quanta", quanta)

    def level_for(self, service: float) -> int:
        """Index of the queue whose range [lo, hi) contains ``service``."""
        # Boundaries are sorted; the simulator calls this once per call it admits.
        return bisect.bisect_right(self.boundaries, service)

    def to_dict(self) -> dict:
        """Plain-JSON form, for carrying the config into vLLM's engine-core process."""
        data = asdict(self)
        data.pop("boundaries")
        data.pop("resolved_quanta")
        data["service_unit"] = self.service_unit.value
        if self.quanta is not None:
            data["quanta"] = [q if math.isfinite(q) else "inf" for q in self.quanta]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> PolicyConfig:
        """Inverse of :meth:`to_dict`."""
        data = dict(data)
        if data.get("quanta") is not None:
            data["quanta"] = tuple(float(q) for q in data["quanta"])
        return cls(**data)
