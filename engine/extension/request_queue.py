"""The waiting queue of our scheduler, ordered by the policy's own key.

vLLM's scheduler takes its waiting queues through the ``RequestQueue`` interface
(``scheduler.waiting`` and ``scheduler.kv_holding_waiting``). This one orders requests by
``Policy.sort_key`` of their call, the key the simulators sort by, so the engine and
the simulators order calls by the same code. A heap entry's key must not change while
it sits in the heap: the scheduler changes keys (queue levels) only at decision steps
and then calls :meth:`reorder`, before vLLM reads the queue.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from vllm.v1.core.sched.request_queue import RequestQueue
from vllm.v1.request import Request

SortKey = Callable[[Request], Any]


class PolicyRequestQueue(RequestQueue):
    """A priority queue on ``key(request)``; :meth:`reorder` after keys changed."""

    def __init__(self, key: SortKey) -> None:
        self._key = key
        self._count = itertools.count()  # ties: insertion order, never compares requests
        self._heap: list[tuple[Any, int, Request]] = []

    def _entry(self, request: Request) -> tuple[Any, int, Request]:
        return (self._key(request), next(self._count), request)

    def add_request(self, request: Request) -> None:
        heapq.heappush(self._heap, self._entry(request))

    def pop_request(self) -> Request:
        if not self._heap:
            raise IndexError("pop from an empty queue")
        return heapq.heappop(self._heap)[2]

    def peek_request(self) -> Request:
        if not self._heap:
            raise IndexError("peek at an empty queue")
        return self._heap[0][2]

    def prepend_request(self, request: Request) -> None:
        # A priority queue has no front: the key decides (as vLLM's own).
        self.add_request(request)

    def prepend_requests(self, requests: Iterable[Request]) -> None:
        for request in requests:
            self.add_request(request)

    def remove_request(self, request: Request) -> None:
        self.remove_requests((request,))

    def remove_requests(self, requests: Iterable[Request]) -> None:
        gone = {id(r) for r in requests}
        self._heap = [e for e in self._heap if id(e[2]) not in gone]
        heapq.heapify(self._heap)

    def reorder(self) -> None:
        """Recompute every key (members' queue levels changed) and restore order."""
        self._heap = [self._entry(e[2]) for e in sorted(self._heap, key=lambda e: e[1])]
        heapq.heapify(self._heap)

    def best(self, n: int) -> list[Request]:
        """The ``n`` first requests in queue order (without removing them)."""
        return [e[2] for e in heapq.nsmallest(n, self._heap)]

    def __bool__(self) -> bool:
        return bool(self._heap)

    def __len__(self) -> int:
        return len(self._heap)

    def __iter__(self) -> Iterator[Request]:
        return (e[2] for e in sorted(self._heap))
