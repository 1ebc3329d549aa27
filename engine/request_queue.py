"""The waiting queue of our scheduler: vLLM's priority queue, re-ordered in place.

vLLM's ``PriorityRequestQueue`` is a heap on ``request.priority`` (then arrival); a
heap entry's key must not change while it sits in the heap. Our scheduler changes
priorities only at decision steps and then calls :meth:`reorder` (before vLLM's
``schedule`` reads the queue), and sets a new call's priority before vLLM queues it, so
the heap is in order whenever vLLM looks. Installed through vLLM's ``RequestQueue``
interface (the scheduler's ``waiting`` and ``kv_holding_waiting``).
"""

from __future__ import annotations

import heapq

from vllm.v1.core.sched.request_queue import PriorityRequestQueue
from vllm.v1.request import Request


class ProgramPriorityQueue(PriorityRequestQueue):
    """A priority queue whose members' priorities may change between decisions."""

    def reorder(self) -> None:
        """Restore heap order after members' ``priority`` changed."""
        heapq.heapify(self._heap)

    def best(self, n: int) -> list[Request]:
        """The ``n`` first requests in queue order (without removing them)."""
        return heapq.nsmallest(n, self._heap)
