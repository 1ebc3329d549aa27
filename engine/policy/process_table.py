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

from autellix_engine.policy.calls import CallState, CallStats

#: How many ended programs are remembered (ids refuse calls; snapshots for reports).
ENDED_MEMORY = 10_000


class UnknownProgramError(KeyError):
    """No program with this id is in the table."""


class ProgramEndedError(RuntimeError):
    """A call was made on a program that has already ended."""


@dataclass(slots=True)
class ThreadEntry:
    """One active call of a program."""

    call_id: str
    thread_id: str
    arrival: float  # wall clock (time.time()) when the call was submitted
    start_service: float  # program service the call inherited (its priority)
    wait: float = 0.0  # filled when the call completes (service unit)
    service: float = 0.0  # filled when the call completes (service unit)


@dataclass(slots=True)
class ProgramEntry:
    """A program in the table. ``service`` and ``wait`` are in the service unit."""

    program_id: str
    created: float
    service: float = 0.0  # attained service (PLAS sum / ATLAS critical path)
    wait: float = 0.0  # accumulated waiting of completed calls (W_p)
    queue_wait_s: float = 0.0  # same, in wall seconds
    execution_s: float = 0.0  # engine seconds of completed calls (summed over threads)
    num_calls: int = 0  # completed calls
    num_aborted: int = 0  # calls aborted (cancelled or failed)
    tokens_generated: int = 0
    preemptions: int = 0
    prompt_tokens: int = 0  # of completed calls
    cached_tokens: int = 0  # prompt tokens served from the prefix cache
    retained_tokens: int = 0  # of which from the program's retained KV
    reprefilled_tokens: int = 0  # history tokens computed again (CallStats)
    threads: dict[str, ThreadEntry] = field(default_factory=dict)
    replica_ids: set[int] = field(default_factory=set)
    last_call_arrival: float | None = None
    last_call_completion: float | None = None
    explicit: bool = False  # started by start_program (vs implicitly by a call)


@dataclass(frozen=True, slots=True)
class ProgramSnapshot:
    """Read-only view of a program, as returned by ``AutellixEngine.programs()``."""

    program_id: str
    service: float
    wait: float
    queue_wait_s: float
    execution_s: float
    num_calls: int
    num_aborted: int
    active_threads: tuple[str, ...]
    tokens_generated: int
    preemptions: int
    replica_ids: tuple[int, ...]
    created: float
    last_call_arrival: float | None
    last_call_completion: float | None
    prompt_tokens: int = 0
    cached_tokens: int = 0
    retained_tokens: int = 0
    reprefilled_tokens: int = 0

    @property
    def prefix_hit_rate(self) -> float:
        """Prompt tokens served from the prefix cache / prompt tokens, over its calls."""
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0

    @classmethod
    def from_entry(cls, e: ProgramEntry) -> ProgramSnapshot:
        return cls(
            program_id=e.program_id,
            service=e.service,
            wait=e.wait,
            queue_wait_s=e.queue_wait_s,
            execution_s=e.execution_s,
            num_calls=e.num_calls,
            num_aborted=e.num_aborted,
            active_threads=tuple(t.thread_id for t in e.threads.values()),
            tokens_generated=e.tokens_generated,
            preemptions=e.preemptions,
            replica_ids=tuple(sorted(e.replica_ids)),
            created=e.created,
            last_call_arrival=e.last_call_arrival,
            last_call_completion=e.last_call_completion,
            prompt_tokens=e.prompt_tokens,
            cached_tokens=e.cached_tokens,
            retained_tokens=e.retained_tokens,
            reprefilled_tokens=e.reprefilled_tokens,
        )


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
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._update_rule = update_rule
        self._ttl_s = ttl_s
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
            self._programs[pid] = ProgramEntry(pid, self._clock(), explicit=True)
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
            entry.threads[cid] = ThreadEntry(cid, thread_id, now, entry.service)
            entry.last_call_arrival = now
            return CallTicket(program_id, cid, thread_id, entry.service, entry.wait,
                              entry.created)

    def complete_call(
        self, program_id: str, call_id: str, stats: CallStats, *, tokens: int = 0,
        replica_id: int | None = None, prompt_tokens: int = 0, cached_tokens: int = 0,
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
            entry.queue_wait_s += stats.queue_wait_s
            entry.execution_s += stats.execution_s
            entry.num_calls += 1
            entry.tokens_generated += tokens
            entry.preemptions += stats.preemptions
            entry.prompt_tokens += prompt_tokens
            entry.cached_tokens += cached_tokens
            entry.retained_tokens += stats.retained_tokens
            entry.reprefilled_tokens += stats.reprefilled_tokens
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
        """Remove programs idle (no active call, no activity) for longer than the TTL."""
        now = self._clock()
        removed = []
        with self._lock:
            for pid, e in list(self._programs.items()):
                last = max(e.created, e.last_call_arrival or 0.0, e.last_call_completion or 0.0)
                if not e.threads and now - last > self._ttl_s:
                    del self._programs[pid]
                    self._remember_ended(pid, ProgramSnapshot.from_entry(e))
                    removed.append(pid)
        return removed
