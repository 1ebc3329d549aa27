"""The process table: programs, their active calls (threads) and attained service.

Pure and thread-safe. The front end keeps the authoritative table (one for all
replicas); the vLLM scheduler keeps a local one only for requests that arrive without
program service attached (e.g. a stock ``vllm serve`` client passing just a program id).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from autellix_engine.core.calls import CallState
from autellix_engine.core.errors import ProgramEndedError, UnknownProgramError
from autellix_engine.core.stats import CallStats, Tally

#: How many ended programs are remembered (ids refuse calls; snapshots for reports).
ENDED_MEMORY = 10_000


@dataclass(slots=True)
class ThreadEntry:
    """One active call of a program."""

    thread_id: str
    start_service: float  # program service the call inherited (its priority)


@dataclass(slots=True)
class ProgramEntry:
    """A program in the table. ``service`` and ``wait`` are in the service unit."""

    program_id: str
    created: float
    service: float = 0.0  # attained service (PLAS sum / ATLAS critical path)
    wait: float = 0.0  # accumulated waiting of completed calls (W_p)
    tally: Tally = field(default_factory=Tally)  # over its completed calls
    num_aborted: int = 0  # calls aborted (cancelled or failed)
    threads: dict[str, ThreadEntry] = field(default_factory=dict)  # call id -> thread
    replica_ids: set[int] = field(default_factory=set)
    last_call_arrival: float | None = None
    last_call_completion: float | None = None


@dataclass(frozen=True, slots=True)
class ProgramSnapshot:
    """Read-only view of a program, as returned by ``AutellixEngine.programs()``."""

    program_id: str
    service: float
    wait: float
    tally: Tally  # totals over its completed calls (a copy)
    num_aborted: int
    active_threads: tuple[str, ...]
    replica_ids: tuple[int, ...]
    created: float
    last_call_arrival: float | None
    last_call_completion: float | None

    @classmethod
    def from_entry(cls, e: ProgramEntry) -> ProgramSnapshot:
        return cls(e.program_id, e.service, e.wait, e.tally.copy(), e.num_aborted,
                   tuple(t.thread_id for t in e.threads.values()),
                   tuple(sorted(e.replica_ids)), e.created, e.last_call_arrival,
                   e.last_call_completion)


@dataclass(frozen=True, slots=True)
class CallTicket:
    """What a new call inherits from its program: carried to the engine with it."""

    program_id: str
    call_id: str
    thread_id: str
    program_service: float
    program_wait: float
    program_arrival: float = 0.0  # when the program began (the table's clock)


UpdateRule = Callable[[float, CallState], float]


def _sum_rule(program_service: float, call: CallState) -> float:
    return program_service + call.stats.service


class ProcessTable:
    """Programs by id. Every method is atomic under one lock.

    Args:
        update_rule: how a completed call changes its program's service
            (``Policy.updated_program_service``; PLAS sums, ATLAS takes the max).
        ttl_s: programs with no active call and no activity for this long are
            removed by :meth:`collect_stale`.
        clock: wall clock, injectable for tests.
    """

    def __init__(
        self,
        update_rule: UpdateRule = _sum_rule,
        *,
        ttl_s: float = 600.0,
        max_programs: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._update_rule = update_rule
        self._ttl_s = ttl_s
        self._max_programs = max_programs
        self._clock = clock
        self._programs: dict[str, ProgramEntry] = {}
        self._ended: OrderedDict[str, ProgramSnapshot | None] = OrderedDict()
        self._lock = threading.Lock()

    # -- programs -------------------------------------------------------------
    def start_program(self, program_id: str | None = None) -> str:
        """Create a program (a fresh id when none is given) and return its id."""
        pid = program_id or uuid.uuid4().hex
        with self._lock:
            if pid in self._programs:
                raise ValueError(f"Program {pid!r} is already running")
            self._ended.pop(pid, None)  # an explicit restart reuses the id
            self._programs[pid] = ProgramEntry(pid, self._clock())
        return pid

    def end_program(self, program_id: str) -> ProgramSnapshot:
        """Remove a program; later calls on its id raise ``ProgramEndedError``."""
        with self._lock:
            entry = self._programs.pop(program_id, None)
            if entry is None:
                raise UnknownProgramError(program_id)
            snapshot = ProgramSnapshot.from_entry(entry)
            self._remember_ended(program_id, snapshot)
            return snapshot

    def discard(self, program_id: str) -> None:
        """Forget a program that never ran (its first call was refused): no record
        stays, and its id is free for a new program."""
        with self._lock:
            entry = self._programs.get(program_id)
            if entry is not None and not entry.threads and entry.tally.calls == 0:
                del self._programs[program_id]

    def _remember_ended(self, program_id: str, snapshot: ProgramSnapshot | None) -> None:
        self._ended[program_id] = snapshot
        while len(self._ended) > ENDED_MEMORY:
            self._ended.popitem(last=False)

    def is_ended(self, program_id: str) -> bool:
        """Whether ``program_id`` ended recently (explicitly or by TTL)."""
        with self._lock:
            return program_id in self._ended

    def ended_snapshot(self, program_id: str) -> ProgramSnapshot | None:
        """Final snapshot of a recently ended program, or None."""
        with self._lock:
            return self._ended.get(program_id)

    def get(self, program_id: str) -> ProgramSnapshot | None:
        """Snapshot of one program, or None."""
        with self._lock:
            entry = self._programs.get(program_id)
            return None if entry is None else ProgramSnapshot.from_entry(entry)

    def snapshot(self) -> list[ProgramSnapshot]:
        """Snapshots of all programs, oldest first."""
        with self._lock:
            return [ProgramSnapshot.from_entry(e) for e in self._programs.values()]

    def __len__(self) -> int:
        with self._lock:
            return len(self._programs)

    def active_calls(self) -> int:
        """Calls begun and not yet completed or aborted, over all programs."""
        with self._lock:
            return sum(len(e.threads) for e in self._programs.values())

    def __contains__(self, program_id: object) -> bool:
        with self._lock:
            return program_id in self._programs

    # -- calls ----------------------------------------------------------------
    def begin_call(
        self,
        program_id: str,
        thread_id: str,
        *,
        call_id: str | None = None,
        arrival: float | None = None,
    ) -> CallTicket:
        """Register a new active call; unknown programs are created implicitly.

        ``arrival`` is when the call arrived on its caller's clock (vLLM's
        ``Request.arrival_time``); a program it creates began then (its
        ``program_arrival``, which PLAS/ATLAS order by). Default: the table's clock.

        Raises:
            ProgramEndedError: the program already ended.
        """
        cid = call_id or uuid.uuid4().hex
        now = self._clock()
        with self._lock:
            if program_id in self._ended:
                msg = f"Program {program_id!r} has ended; start a new program"
                raise ProgramEndedError(msg)
            entry = self._programs.get(program_id)
            if entry is None:
                created = now if arrival is None else arrival
                entry = self._programs[program_id] = ProgramEntry(program_id, created)
            if cid in entry.threads:
                raise ValueError(f"Call id {cid!r} is already active")
            entry.threads[cid] = ThreadEntry(thread_id, entry.service)
            entry.last_call_arrival = now
            return CallTicket(program_id, cid, thread_id, entry.service, entry.wait,
                              entry.created)

    def complete_call(
        self, program_id: str, call_id: str, stats: CallStats, *, prompt_tokens: int = 0,
        cached_tokens: int = 0, completion_tokens: int = 0, replica_id: int | None = None,
    ) -> float:
        """Account a finished call and return the program's new service.

        A program that ended (or was collected) meanwhile is left alone.
        """
        with self._lock:
            entry = self._programs.get(program_id)
            if entry is None:
                return 0.0
            thread = entry.threads.pop(call_id, None)
            start = thread.start_service if thread is not None else entry.service
            call = CallState(call_id, program_id, "", 0.0, 0, start_service=start, stats=stats)
            entry.service = self._update_rule(entry.service, call)
            entry.wait += stats.wait
            entry.tally.add(stats, prompt_tokens, cached_tokens, completion_tokens)
            if replica_id is not None:
                entry.replica_ids.add(replica_id)
            entry.last_call_completion = self._clock()
            return entry.service

    def abort_call(self, program_id: str, call_id: str) -> None:
        """Forget an active call that will not complete (cancelled or failed)."""
        with self._lock:
            entry = self._programs.get(program_id)
            if entry is not None and entry.threads.pop(call_id, None) is not None:
                entry.num_aborted += 1
                entry.last_call_completion = self._clock()

    # -- garbage collection ---------------------------------------------------
    def collect_stale(self) -> list[str]:
        """Remove programs idle (no active call, no activity) for longer than the TTL,
        then, beyond ``max_programs``, the least recently active idle ones."""
        now = self._clock()
        removed = []
        with self._lock:
            idle = sorted((_last_activity(e), pid) for pid, e in self._programs.items()
                          if not e.threads)
            excess = len(self._programs) - (self._max_programs or len(self._programs))
            for last, pid in idle:
                if now - last <= self._ttl_s and excess <= 0:
                    break
                entry = self._programs.pop(pid)
                self._remember_ended(pid, ProgramSnapshot.from_entry(entry))
                removed.append(pid)
                excess -= 1
        return removed


def _last_activity(e: ProgramEntry) -> float:
    return max(e.created, e.last_call_arrival or 0.0, e.last_call_completion or 0.0)


class LocalPrograms:
    """The scheduler's own table, for requests that name a program but carry no
    program service (a plain ``vllm serve`` client sending only a session id): the
    front end's table is the authority when there is one
    (``autellix_engine.core.wire``)."""

    def __init__(self, update_rule: UpdateRule, ttl_s: float) -> None:
        self._table = ProcessTable(update_rule, ttl_s=ttl_s)
        self._calls: set[str] = set()  # calls accounted here

    def inherit(self, program_id: str, thread_id: str, call_id: str,
                arrival: float) -> tuple[float, float, float]:
        """(service, wait, program arrival) a new call of ``program_id`` inherits."""
        if self._table.is_ended(program_id):
            return 0.0, 0.0, arrival
        ticket = self._table.begin_call(program_id, thread_id, call_id=call_id,
                                        arrival=arrival)
        self._calls.add(call_id)
        return ticket.program_service, ticket.program_wait, ticket.program_arrival

    def finished(self, call: CallState, aborted: bool) -> None:
        """A call accounted here left the engine (no-op for the others)."""
        if call.call_id not in self._calls:
            return
        self._calls.discard(call.call_id)
        if aborted:
            self._table.abort_call(call.program_id, call.call_id)
        else:
            self._table.complete_call(call.program_id, call.call_id, call.stats)

    def get(self, program_id: str) -> ProgramSnapshot | None:
        return self._table.get(program_id)

    def collect_stale(self) -> None:
        self._table.collect_stale()
