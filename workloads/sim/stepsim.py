"""A unit-step simulator of continuous batching, for policy checks such as the paper's
Fig. 2 toy example.

Time advances in decode steps. Each step, up to ``batch_size`` active calls run one
step each (one unit of service); every other active call waits one unit. A call that
finishes at the end of step ``t`` completes at ``t + 1``, and its program's next call
(or next stage of parallel calls) arrives then.

Batch formation: preemptive policies rebuild the batch in strict priority order every
step (paper Alg. 1, lines 32-39). FCFS keeps running calls and fills free slots in
arrival order (stock vLLM never preempts to admit a call).

Tie-breaking (documented so hand-computed schedules can be reproduced): calls compare
by ``Policy.sort_key`` = (client priority, queue, arrival time, arrival sequence); calls
arriving at the same time get their sequence in program order (the order of ``programs``), then in
stage order within a program.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from autellix_engine.core.calls import CallState
from autellix_engine.core.policies import Policy
from autellix_engine.core.process_table import ProcessTable


@dataclass(frozen=True, slots=True)
class StepProgram:
    """A program as a sequence of stages; each stage is a tuple of parallel calls'
    lengths in decode steps. A single-threaded program has one call per stage."""

    name: str
    stages: tuple[tuple[int, ...], ...]
    arrival: int = 0

    @classmethod
    def sequential(cls, name: str, lengths: list[int], arrival: int = 0) -> StepProgram:
        return cls(name, tuple((n,) for n in lengths), arrival)


@dataclass(frozen=True, slots=True)
class SimCall:
    """One finished call of a simulation."""

    program: str
    stage: int
    length: int
    arrival: int
    start: int  # first step it ran
    completion: int

    @property
    def waiting(self) -> int:
        return self.completion - self.arrival - self.length


@dataclass(slots=True)
class SimResult:
    calls: list[SimCall] = field(default_factory=list)
    program_completion: dict[str, int] = field(default_factory=dict)
    schedule: list[tuple[str, ...]] = field(default_factory=list)  # per step: running

    @property
    def total_waiting(self) -> int:
        return sum(c.waiting for c in self.calls)


@dataclass(slots=True)
class _Active:
    state: CallState
    program: StepProgram
    stage: int
    remaining: int
    length: int
    start: int | None = None


def simulate_steps(
    programs: list[StepProgram], policy: Policy, batch_size: int, max_steps: int = 100_000
) -> SimResult:
    """Run ``programs`` to completion under ``policy``; return every call's timing."""
    table = ProcessTable(policy.updated_program_service)
    result = SimResult()
    active: list[_Active] = []
    running: list[_Active] = []
    open_calls: dict[str, int] = {}  # program -> calls left in its current stage
    seq = 0

    def arrive(prog: StepProgram, stage: int, now: int) -> None:
        nonlocal seq
        open_calls[prog.name] = len(prog.stages[stage])
        for i, length in enumerate(prog.stages[stage]):
            ticket = table.begin_call(prog.name, f"s{stage}t{i}")
            call = CallState(
                ticket.call_id, prog.name, ticket.thread_id, float(now), seq,
                start_service=ticket.program_service, program_wait=ticket.program_wait,
                program_arrival=float(prog.arrival),
            )
            seq += 1
            policy.admit(call)
            active.append(_Active(call, prog, stage, length, length))

    pending = sorted(programs, key=lambda p: p.arrival)
    for now in range(max_steps):
        for prog in [p for p in pending if p.arrival == now]:
            arrive(prog, 0, now)
            pending.remove(prog)
        if not active and not pending:
            return result
        batch = _form_batch(active, running, policy, batch_size)
        result.schedule.append(tuple(f"{a.program.name}{a.stage + 1}" for a in batch))
        finished = []
        for a in active:
            if a in batch:
                a.start = now if a.start is None else a.start
                a.remaining -= 1
                policy.record_service(a.state, 1.0)
                if a.remaining == 0:
                    finished.append(a)
            else:
                policy.record_wait(a.state, 1.0)
        running = [a for a in batch if a not in finished]
        for a in finished:
            _finish(a, now + 1, table, result)
            active.remove(a)
            open_calls[a.program.name] -= 1
            if open_calls[a.program.name] == 0:
                if a.stage + 1 < len(a.program.stages):
                    arrive(a.program, a.stage + 1, now + 1)
                else:
                    result.program_completion[a.program.name] = now + 1
    raise RuntimeError(f"simulation did not finish in {max_steps} steps")


def _form_batch(
    active: list[_Active], running: list[_Active], policy: Policy, batch_size: int
) -> list[_Active]:
    def key(a: _Active) -> tuple:
        return policy.sort_key(a.state)

    if policy.preemptive:
        return sorted(active, key=key)[:batch_size]
    kept = [a for a in running if a in active]
    waiting = sorted((a for a in active if a not in kept), key=key)
    return kept + waiting[: batch_size - len(kept)]


def _finish(a: _Active, completion: int, table: ProcessTable, result: SimResult) -> None:
    table.complete_call(a.state.program_id, a.state.call_id, a.state.stats)
    result.calls.append(
        SimCall(a.program.name, a.stage, a.length, int(a.state.arrival), a.start, completion)
    )
