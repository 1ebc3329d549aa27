"""Lazy waiting accounting: O(promotions) per engine step, not O(waiting calls).

Every engine step charges one unit of waiting to each active call it did not schedule,
and a multi-level policy promotes a call whose waiting crosses its starvation threshold
(``Policy.wait_until_promotion``). With a thousand queued calls, doing that call by call
in Python was most of our scheduler's overhead over stock vLLM (docs/benchmarks.md).

The ledger keeps one clock that advances by each step's waiting; a waiting call records
the clock when it began to wait, and its promotion deadline (clock + the waiting it has
left) goes into a heap. A step then costs a heap peek, plus one pop per promotion. A
call's waiting is written into its ``CallState`` (through the policy, as before) when
it stops waiting: when it is scheduled, when it is promoted, or when it ends.

The scheduler (``autellix_engine.extension.scheduler``) and the simulator
(``autellix_workloads.sim``) use the same ledger, so they promote at the same steps.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

from autellix_engine.core.calls import CallState
from autellix_engine.core.policies import Policy


@dataclass(slots=True)
class _Mark:
    call: CallState
    clock: float  # the ledger's wait clock when the call began (or resumed) waiting
    wall: float  # the ledger's wall clock then (seconds)
    token: int  # matches the heap entry that is current for this call
    due: bool  # its promotion was due as it began waiting (no waiting left)


class WaitLedger:
    """The set of waiting calls, with their waiting charged lazily."""

    def __init__(self, policy: Policy) -> None:
        self._policy = policy
        self.clock = 0.0  # policy units of waiting (one per step for the tokens unit)
        self.wall = 0.0  # seconds of waiting (CallStats.queue_wait_s)
        self._marks: dict[str, _Mark] = {}
        self._deadlines: list[tuple[float, int, str]] = []  # (clock, token, call_id)
        self._tokens = 0

    def __contains__(self, call_id: str) -> bool:
        return call_id in self._marks

    def __len__(self) -> int:
        return len(self._marks)

    def start(self, call: CallState) -> None:
        """``call`` begins to wait (it arrived, or was not scheduled this step)."""
        if call.call_id in self._marks:
            return
        self._tokens += 1
        left = self._policy.wait_until_promotion(call)
        self._marks[call.call_id] = _Mark(call, self.clock, self.wall, self._tokens, left <= 0)
        if math.isfinite(left):
            heapq.heappush(self._deadlines, (self.clock + left, self._tokens, call.call_id))

    def stop(self, call_id: str) -> bool:
        """``call_id`` stops waiting (scheduled, or ended): charge what it waited.
        Returns True if that waiting changed its queue."""
        mark = self._marks.pop(call_id, None)
        if mark is None:
            return False
        if mark.clock == self.clock and mark.wall == self.wall and not mark.due:
            return False  # it waited nothing (admitted as it came): nothing to charge
        return self._charge(mark)

    def _charge(self, mark: _Mark) -> bool:
        mark.call.stats.queue_wait_s += self.wall - mark.wall
        return self._policy.record_wait(mark.call, self.clock - mark.clock)

    def tick(self, amount: float, seconds: float) -> list[CallState]:
        """One step (or several identical ones) of waiting for every waiting call;
        returns the calls promoted, which keep waiting in their new queue."""
        self.clock += amount
        self.wall += seconds
        promoted = []
        while self._deadlines and self._deadlines[0][0] <= self.clock:
            _, token, call_id = heapq.heappop(self._deadlines)
            mark = self._marks.get(call_id)
            if mark is None or mark.token != token:
                continue  # stale: it was scheduled or ended meanwhile
            del self._marks[call_id]
            if self._charge(mark):
                promoted.append(mark.call)
            self.start(mark.call)  # still waiting, from now, in its (new) queue
        return promoted

    def steps_to_next_promotion(self) -> float:
        """Clock units until the earliest pending promotion (inf when none); stale
        heap entries may make this early, never late."""
        return self._deadlines[0][0] - self.clock if self._deadlines else math.inf
