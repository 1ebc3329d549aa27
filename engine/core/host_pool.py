"""Bookkeeping of the bounded host swap pool (pure Python; no vLLM, no torch).

The pool is ``capacity`` slots of one KV block each (all layers, K and V). A swap
takes one *extent* of consecutive slots, so that the kernel moves the whole swap
into one contiguous buffer with one transfer. Allocation is first fit over a sorted
free list with coalescing on free; when no extent is long enough the caller falls
back to recomputation for that call (the paper's behaviour when host memory is full).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass


@dataclass(frozen=True)
class Extent:
    """``length`` consecutive slots from ``start``."""

    start: int
    length: int

    @property
    def end(self) -> int:
        return self.start + self.length


class HostSwapPool:
    """First-fit extent allocator over ``capacity`` host slots, owned by request id."""

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self._free: list[tuple[int, int]] = [(0, capacity)] if capacity else []  # (start, len)
        self._owned: dict[str, Extent] = {}
        self.peak_used = 0

    @property
    def used(self) -> int:
        return sum(e.length for e in self._owned.values())

    def extent_of(self, owner: str) -> Extent | None:
        return self._owned.get(owner)

    def allocate(self, owner: str, length: int) -> Extent | None:
        """An extent of ``length`` slots for ``owner``, or None when none is free."""
        if length <= 0:
            raise ValueError(f"length must be > 0, got {length}")
        if owner in self._owned:
            raise ValueError(f"{owner!r} already holds an extent")
        for i, (start, free_len) in enumerate(self._free):
            if free_len < length:
                continue
            if free_len == length:
                del self._free[i]
            else:
                self._free[i] = (start + length, free_len - length)
            extent = Extent(start, length)
            self._owned[owner] = extent
            self.peak_used = max(self.peak_used, self.used)
            return extent
        return None

    def free(self, owner: str) -> bool:
        """Return ``owner``'s extent to the pool; False when it held none."""
        extent = self._owned.pop(owner, None)
        if extent is None:
            return False
        i = bisect.bisect_left(self._free, (extent.start, 0))
        start, length = extent.start, extent.length
        if i < len(self._free) and self._free[i][0] == extent.end:  # merge right
            length += self._free.pop(i)[1]
        if i > 0 and sum(self._free[i - 1]) == start:  # merge left
            prev_start, prev_len = self._free.pop(i - 1)
            start, length = prev_start, prev_len + length
            i -= 1
        self._free.insert(i, (start, length))
        return True

    def largest_free(self) -> int:
        return max((length for _, length in self._free), default=0)

    def check(self) -> None:
        """Assert the invariants (tests): disjoint, sorted, coalesced, all accounted."""
        spans = sorted(
            [(s, n) for s, n in self._free] + [(e.start, e.length) for e in self._owned.values()]
        )
        pos = 0
        for start, length in spans:
            assert start == pos and length > 0, (start, length, pos)
            pos += length
        assert pos == self.capacity, (pos, self.capacity)
        for (a, n), (b, _) in zip(self._free, self._free[1:]):
            assert a + n < b, "free extents not coalesced"
