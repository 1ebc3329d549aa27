"""Scheduler-side swap planning (pure Python; no vLLM, no torch).

Decides, per engine step, which calls' blocks go out to the host pool and which come
back, and owns the host pool's bookkeeping. ``autellix_engine.extension.swap_connector``
is the thin vLLM glue around it; the unit tests drive it directly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from autellix_engine.core.host_pool import HostSwapPool
from autellix_engine.core.stats import SwapStats


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


@dataclass
class _Offer:
    """A retained program's blocks offered to its next call."""

    owner: str
    slots: list[int]  # host slot of each leading block of the call the pool holds
    offered: int = 0  # tokens offered


#: Host-pool owner key of a retained program's blocks (request ids never start so).
RETAINED_OWNER = "retained:"


@dataclass
class _HostCopy:
    """A retained program's blocks in the host pool."""

    owner: str  # its extent's owner key: one per copy (an older copy may still be read)
    slots: dict[bytes, int]  # block hash -> host slot


class SwapPlanner:
    """Plans swap-outs at preemption and swap-ins at resumption over a bounded pool.

    The pool also holds the host tier of KV retention
    (``autellix_engine.extension.retention_pins``): a live program's blocks that device
    memory needed, copied out before their reuse
    and offered to the program's next call. Preemptions come first: a preempted call
    that finds no room drops retained programs' copies, oldest first.
    """

    def __init__(self, pool_blocks: int, block_size: int) -> None:
        self.pool = HostSwapPool(pool_blocks)
        self.block_size = block_size
        self._swapped: dict[str, _Swapped] = {}
        self._step = StepSwaps()
        self._release: list[str] = []
        self._stats: dict[str, SwapStats] = {}
        self._retained: dict[str, _HostCopy] = {}  # program -> its newest copy
        self._copies = 0  # copies made (numbers their owner keys)
        self._expected: dict[str, str] = {}  # req id -> program with a retained copy
        self._offers: dict[str, _Offer] = {}
        self._loading: set[str] = set()  # retained owners read by this step's swap-ins

    def is_swapped_out(self, req_id: str) -> bool:
        return req_id in self._swapped

    def awaits_blocks(self, req_id: str) -> bool:
        """Whether the call's allocation is the target of an offer (a swap-in)."""
        return req_id in self._swapped or req_id in self._offers

    def preempted(self, req_id: str, num_computed_tokens: int, block_ids: list[int]) -> bool:
        """A call is preempted; True when its blocks will be swapped out, False when it
        recomputes (nothing computed, or the pool has no room: a fallback)."""
        if num_computed_tokens <= 0:
            return False
        stats = self._stats.setdefault(req_id, SwapStats())
        n_blocks = math.ceil(num_computed_tokens / self.block_size)
        extent = None
        if n_blocks <= len(block_ids):
            extent = self.pool.allocate(req_id, n_blocks)
            for pid in list(self._retained):  # preemptions before retention
                if extent is not None:
                    break
                if self._drop_now(pid):
                    extent = self.pool.allocate(req_id, n_blocks)
        if extent is None:
            stats.swap_fallbacks += 1
            return False
        self._step.swap_out.append(SwapOp(req_id, tuple(block_ids[:n_blocks]), extent.start))
        self._swapped[req_id] = _Swapped(num_computed_tokens)
        stats.swaps_out += 1
        stats.swapped_blocks += n_blocks
        return True

    def offer(self, req_id: str, num_tokens: int, num_local_tokens: int,
              block_hashes: Sequence[bytes] = ()) -> int:
        """Tokens the host pool can restore beyond a local prefix hit of
        ``num_local_tokens``, for a call with ``num_tokens`` tokens: a resuming call's
        own KV, else its program's retained blocks matching ``block_hashes`` (the
        call's full-block prefix hashes)."""
        swapped = self._swapped.get(req_id)
        if swapped is None:
            return self._offer_retained(req_id, num_tokens, num_local_tokens, block_hashes)
        # At least one token must be computed to produce the next logits.
        swapped.offered = min(swapped.tokens, num_tokens - 1)
        return max(0, swapped.offered - num_local_tokens)

    def resumed(self, req_id: str, block_ids: list[int], num_external_tokens: int) -> None:
        """vLLM allocated ``block_ids`` for a resuming call and accepted
        ``num_external_tokens`` of our offer: swap them in this step."""
        if req_id in self._offers:
            self._load_retained(req_id, block_ids, num_external_tokens)
            return
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
        self._expected.pop(req_id, None)
        self._offers.pop(req_id, None)
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
        self._loading.clear()
        return step

    def add_seconds(self, req_id: str, seconds: float) -> None:
        stats = self._stats.get(req_id)
        if stats is not None:
            stats.swap_s += seconds

    def pop_stats(self, req_id: str) -> SwapStats | None:
        return self._stats.pop(req_id, None)

    # -- the host tier of KV retention ---------------------------------------------------
    def retain(self, program_id: str, block_ids: Sequence[int],
               block_hashes: Sequence[bytes]) -> bool:
        """Copy a retained program's blocks (about to be reused on the device) to the
        host this step; False when the pool has no room (its next call recomputes)."""
        self.drop_retained(program_id)  # its extent is free from the next step
        self._copies += 1
        owner = f"{RETAINED_OWNER}{self._copies}:{program_id}"
        extent = self.pool.allocate(owner, len(block_ids)) if block_ids else None
        if extent is None:
            return False
        self._step.swap_out.append(SwapOp(owner, tuple(block_ids), extent.start))
        self._retained[program_id] = _HostCopy(
            owner, {h: extent.start + i for i, h in enumerate(block_hashes)})
        return True

    def reload_tokens(self, req_id: str) -> int:
        """Prompt tokens the call got from its program's host copy (so far)."""
        stats = self._stats.get(req_id)
        return stats.retained_reload_tokens if stats is not None else 0

    def has_retained(self, program_id: str) -> bool:
        return program_id in self._retained

    @property
    def retained_blocks(self) -> int:
        """Host blocks holding retained programs' KV."""
        return sum(len(copy.slots) for copy in self._retained.values())

    def expect(self, req_id: str, program_id: str) -> None:
        """``req_id`` is a call of ``program_id``: offer it the program's host copy."""
        if program_id in self._retained:
            self._expected[req_id] = program_id

    def drop_retained(self, program_id: str) -> None:
        """Forget a program's host copy (it ended, or its next call got its KV): its
        slots are free from the next step (this step may still read them)."""
        copy = self._retained.pop(program_id, None)
        if copy is not None:
            # A swap-out queued this step stays: this step's swap-ins may read it.
            self._release.append(copy.owner)

    def drop_all_retained(self) -> None:
        """Forget every retained program's host copy (a prefix-cache reset)."""
        for program_id in list(self._retained):
            self.drop_retained(program_id)

    def _drop_now(self, program_id: str) -> bool:
        """Free a program's host copy for immediate reuse, unless this step reads it."""
        owner = self._retained[program_id].owner
        if owner in self._loading:
            return False
        del self._retained[program_id]
        self._step.swap_out = [op for op in self._step.swap_out if op.req_id != owner]
        return self.pool.free(owner)

    def _offer_retained(self, req_id: str, num_tokens: int, num_local_tokens: int,
                        block_hashes: Sequence[bytes]) -> int:
        program_id = self._expected.get(req_id)
        copy = self._retained.get(program_id) if program_id is not None else None
        if copy is None:
            return 0
        slots_by_hash = copy.slots
        slots: list[int] = []
        for h in block_hashes:  # hashes chain: a match is a match of the whole prefix
            slot = slots_by_hash.get(h)
            if slot is None:
                break
            slots.append(slot)
        offered = min(len(slots) * self.block_size, num_tokens - 1)
        if offered <= num_local_tokens:
            return 0
        self._offers[req_id] = _Offer(copy.owner, slots, offered)
        return offered - num_local_tokens

    def _load_retained(self, req_id: str, block_ids: list[int], num_external_tokens: int) -> None:
        offer = self._offers.pop(req_id)
        self._expected.pop(req_id, None)
        if num_external_tokens <= 0:
            return
        first = (offer.offered - num_external_tokens) // self.block_size
        last = math.ceil(offer.offered / self.block_size)
        start = first
        for j in range(first + 1, last + 1):  # one op per run of consecutive slots
            if j == last or offer.slots[j] != offer.slots[j - 1] + 1:
                self._step.swap_in.append(
                    SwapOp(offer.owner, tuple(block_ids[start:j]), offer.slots[start]))
                start = j
        self._loading.add(offer.owner)
        stats = self._stats.setdefault(req_id, SwapStats())
        stats.retained_reload_tokens += num_external_tokens
