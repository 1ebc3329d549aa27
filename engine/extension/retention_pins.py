"""vLLM glue of KV retention: pins in vLLM's block pool, and the host tier.

Extension points used, and why (no vLLM source is patched):

* ``BlockPool.touch`` / ``BlockPool.free_blocks`` (reference counts): a finished call's
  full, prefix-cached blocks get one more reference held for its program, so that
  vLLM's free of the request leaves them out of the free queue, where any allocation
  would evict them. Releasing is ``free_blocks``; blocks nobody should hit again go to
  the front of the free queue (``FreeKVCacheBlockQueue.remove``/``prepend_n``), to be
  reused before any other cached block.
* ``KVCacheManager.allocate_slots`` returns None when the pool is short: our scheduler
  wraps it (``_ProgramAwareMixin._make_retention``) to release retained programs and
  retry, so retention never makes vLLM refuse or preempt an active call.
* The host tier is our swap connector's host pool
  (``autellix_engine.extension.swap_connector``): blocks that pressure releases are
  copied out in the same step, before the worker reuses
  them, and offered back to the program's next call through the KV connector API
  (``get_num_new_matched_tokens``), matched by block hash. vLLM's own CPU offloading
  (``OffloadingConnector``) stores every block and needs CUDA; one connector per
  engine, and ours already owns the host pool.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vllm.v1.core.kv_cache_utils import get_block_hash

from autellix_engine.core.retention import RetainedKV, RetentionTable

if TYPE_CHECKING:
    from vllm.v1.core.kv_cache_manager import KVCacheManager
    from vllm.v1.core.kv_cache_utils import KVCacheBlock
    from vllm.v1.request import Request

    from autellix_engine.core.swap_planner import SwapPlanner


class KVRetention:
    """Retains live programs' KV blocks between their calls in one engine."""

    def __init__(self, manager: KVCacheManager, ttl_s: float,
                 host: SwapPlanner | None = None) -> None:
        self._manager = manager
        self._pool = manager.block_pool
        self._host = host
        self.table = RetentionTable(ttl_s)

    @property
    def host(self) -> SwapPlanner | None:
        return self._host

    def guard_allocations(self, own_program: Callable[[Request], str | None]) -> None:
        """Make retention yield to every allocation: when vLLM would refuse one (a
        waiting call stays out, a running one is preempted for memory), release the
        worst retained program (never the allocating call's own, ``own_program``) and
        retry, so retention never holds memory an active call needs."""
        inner = self._manager.allocate_slots

        def allocate_slots(request: Request, *args: Any, **kwargs: Any):
            blocks = inner(request, *args, **kwargs)
            while blocks is None and self.make_room(own_program(request)):
                blocks = inner(request, *args, **kwargs)
            return blocks

        self._manager.allocate_slots = allocate_slots

    # -- events ------------------------------------------------------------------------
    def on_call_finished(self, request: Request, program_id: str, priority: int,
                         now: float, node: str = "") -> None:
        """Pin the finished call's prefix-cached blocks (before vLLM frees them)."""
        blocks = self._manager.get_blocks(request.request_id).blocks[0]
        cached = []
        for block in blocks:  # cached blocks are a prefix of the request's blocks
            if block.is_null or block.block_hash is None:
                break
            cached.append(block.block_id)
        if not cached:
            return
        new = self.table.retain(program_id, cached, priority, now, node)
        self._pool.touch([self._pool.blocks[i] for i in new])

    def on_admitted(self, program_id: str, hit_block_ids: list[int]) -> int:
        """A call of the program was scheduled with a prefix hit on ``hit_block_ids``:
        it now holds what it reused, and its program's pins are released. Returns how
        many of its hit blocks were retained for it."""
        entry = self.table.pop(program_id)
        if self._host is not None:
            self._host.drop_retained(program_id)
        if entry is None:
            return 0
        self._release(entry, evict_first=False)
        return len(set(entry.block_ids).intersection(hit_block_ids))

    def end(self, program_ids: tuple[str, ...] | list[str]) -> None:
        """The programs ended: their blocks are reused before any other cached block."""
        for pid in program_ids:
            self._forget(pid, evict_first=True)

    def collect(self, now: float) -> None:
        """Programs idle past the TTL go back to vLLM's ordinary prefix cache."""
        for pid in self.table.expired(now):
            self._forget(pid, evict_first=False)

    def _forget(self, program_id: str, evict_first: bool) -> None:
        """Drop all retention of a program that will not be back."""
        entry = self.table.pop(program_id)
        self.table.forget(program_id)
        if self._host is not None:
            self._host.drop_retained(program_id)
        if entry is not None:
            self._release(entry, evict_first)

    def make_room(self, exclude: str | None = None) -> bool:
        """Release retained programs, worst first, until some block is free; False when
        nothing (but ``exclude``'s own blocks) is left to release."""
        while (entry := self.table.worst(exclude)) is not None:
            self.table.pop(entry.program_id)
            if self._host is not None:
                self._copy_to_host(entry)
            if self._release(entry, evict_first=True):
                return True
        return False

    def release_all(self) -> None:
        """Drop every pin and host copy (before a prefix-cache reset, which needs all
        blocks free and makes every cached KV stale)."""
        for pid in list(self.table.entries):
            self._forget(pid, evict_first=False)
        if self._host is not None:
            self._host.drop_all_retained()

    def releasable_blocks(self) -> int:
        """Pinned blocks that only retention holds (what releasing all would free)."""
        blocks = self._pool.blocks
        return sum(1 for e in self.table.entries.values() for i in e.block_ids
                   if blocks[i].ref_cnt == 1)

    # -- mechanics ---------------------------------------------------------------------
    def _copy_to_host(self, entry: RetainedKV) -> None:
        assert self._host is not None
        blocks = [self._pool.blocks[i] for i in entry.block_ids]
        hashes = [get_block_hash(b.block_hash) for b in blocks if b.block_hash is not None]
        if len(hashes) == len(blocks):  # pinned blocks keep their hashes
            self._host.retain(entry.program_id, entry.block_ids, hashes)

    def _release(self, entry: RetainedKV, evict_first: bool) -> int:
        """Drop retention's reference on the entry's blocks; returns how many became
        free. The chain is freed tail first, as vLLM frees a request's blocks."""
        blocks: list[KVCacheBlock] = [self._pool.blocks[i] for i in reversed(entry.block_ids)]
        self._pool.free_blocks(blocks)
        freed = [b for b in blocks if b.ref_cnt == 0]
        if evict_first and freed:
            queue = self._pool.free_block_queue
            for block in freed:
                queue.remove(block)
            queue.prepend_n(freed)
        return len(freed)
