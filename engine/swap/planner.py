"""Scheduler-side swap planning (pure Python; no vLLM, no torch).

Decides, per engine step, which calls' blocks go out to the host pool and which come
back, and owns the host pool's bookkeeping. ``autellix_engine.swap.connector`` is the thin vLLM
glue around it; the unit tests drive it directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from autellix_engine.policy.calls import SwapStats
from autellix_engine.swap.host_pool import HostSwapPool


@dataclass(frozen=True)
class SwapOp:
    """Move ``block_ids`` (device) <-> host slots from ``slot`` on, for ``req_id``."""

    req_id: str
    block_ids: tuple[int, ...]
    slot: int


@dataclass
class StepSwaps:
    """One step's swaps. The worker runs every swap-out before any swap-in."""

    swap_out: list[SwapOp] = field(default_factory=list)
    swap_in: list[SwapOp] = field(default_factory=list)


@dataclass
class _Swapped:
    tokens: int  # computed tokens saved at preemption
    offered: int = 0  # tokens offered at the resume lookup


class SwapPlanner:
    """Plans swap-outs at preemption and swap-ins at resumption over a bounded pool."""

    def __init__(self, pool_blocks: int, block_size: int) -> None:
        self.pool = HostSwapPool(pool_blocks)
        self.block_size = block_size
        self._swapped: dict[str, _Swapped] = {}
        self._step = StepSwaps()
        self._release: list[str] = []
        self._stats: dict[str, SwapStats] = {}

    def is_swapped_out(self, req_id: str) -> bool:
        return req_id in self._swapped

    def preempted(self, req_id: str, num_computed_tokens: int, block_ids: list[int]) -> bool:
        """A call is preempted; True when its blocks will be swapped out, False when it
        recomputes (nothing computed, or the pool has no room: a fallback)."""
        if num_computed_tokens <= 0:
            return False
        stats = self._stats.setdefault(req_id, SwapStats())
        n_blocks = math.ceil(num_computed_tokens / self.block_size)
        extent = self.pool.allocate(req_id, n_blocks) if n_blocks <= len(block_ids) else None
        if extent is None:
            stats.swap_fallbacks += 1
            return False
        self._step.swap_out.append(SwapOp(req_id, tuple(block_ids[:n_blocks]), extent.start))
        self._swapped[req_id] = _Swapped(num_computed_tokens)
        stats.swaps_out += 1
        stats.swapped_blocks += n_blocks
        return True

    def offer(self, req_id: str, num_tokens: int, num_local_tokens: int) -> int:
        """Tokens the host pool can restore beyond a local prefix hit of
        ``num_local_tokens``, for a resuming call with ``num_tokens`` tokens."""
        swapped = self._swapped.get(req_id)
        if swapped is None:
            return 0
        # At least one token must be computed to produce the next logits.
        swapped.offered = min(swapped.tokens, num_tokens - 1)
        return max(0, swapped.offered - num_local_tokens)

    def resumed(self, req_id: str, block_ids: list[int], num_external_tokens: int) -> None:
        """vLLM allocated ``block_ids`` for a resuming call and accepted
        ``num_external_tokens`` of our offer: swap them in this step."""
        swapped = self._swapped.pop(req_id, None)
        if swapped is None:
            return
        self._release.append(req_id)
        extent = self.pool.extent_of(req_id)
        if num_external_tokens <= 0 or extent is None:
            return  # a local prefix hit covered it, or vLLM declined the load
        local = swapped.offered - num_external_tokens
        first = local // self.block_size
        last = math.ceil(swapped.offered / self.block_size)
        self._step.swap_in.append(
            SwapOp(req_id, tuple(block_ids[first:last]), extent.start + first)
        )
        self._stats.setdefault(req_id, SwapStats()).swaps_in += 1

    def finished(self, req_id: str) -> None:
        """The call ended (finished or aborted): free what it still holds."""
        if self._swapped.pop(req_id, None) is not None:
            self._step.swap_out = [op for op in self._step.swap_out if op.req_id != req_id]
            self.pool.free(req_id)

    def take_step(self) -> StepSwaps:
        """This step's swaps. Extents swapped in are free again from the next step on:
        the worker runs this step's swap-ins before any later step's swap-outs."""
        step, self._step = self._step, StepSwaps()
        for req_id in self._release:
            self.pool.free(req_id)
        self._release.clear()
        return step

    def add_seconds(self, req_id: str, seconds: float) -> None:
        stats = self._stats.get(req_id)
        if stats is not None:
            stats.swap_s += seconds

    def pop_stats(self, req_id: str) -> SwapStats | None:
        return self._stats.pop(req_id, None)
