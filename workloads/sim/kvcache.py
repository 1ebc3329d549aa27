"""The simulator's KV memory: device blocks with an LRU prefix cache, and a host swap pool.

A model of vLLM V1's block pool at the granularity the simulator needs:

* blocks are in use (held by a scheduled or preempted-but-cached call), cached (freed,
  still holding a prefix that a later call can hit) or free;
* allocation takes free blocks first and then evicts cached ones, least recently freed
  first; within one freed chain the tail goes first (vLLM frees a request's blocks in
  reverse order), so an entry shrinks from its end and its head stays hittable;
* a hit moves a cached prefix back into use;
* a shared prefix (a suite's system prompt) is held once while any call uses it;
* with KV retention (``autellix_engine.extension.retention_pins``), a live program's prefix is
  *retained*: out of the LRU order until an allocation finds nothing else to evict;
  then ``pick_retained`` names the program to give up (the engine's release order) and
  ``on_released`` hears of it (the host tier copies it), and its blocks go to the front
  of the LRU order, as the engine's release puts them at the front of vLLM's free queue.

Cached prefixes are keyed by whoever can hit them: a program (its conversation so far,
for its next call), a preempted call (its own context, for its resumption) or a shared
system prompt.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field


@dataclass
class BlockPool:
    """Device KV blocks. ``used + cached + retained + free == capacity`` at all times."""

    capacity: int
    used: int = 0
    cached: int = 0
    retained: int = 0
    evicted: int = 0  # cached blocks reclaimed for new allocations (a metric)
    pick_retained: Callable[[], Hashable] | None = None
    on_released: Callable[[Hashable, int], None] | None = None
    _lru: OrderedDict[Hashable, int] = field(default_factory=OrderedDict)
    _retained: dict[Hashable, int] = field(default_factory=dict)
    _shared: dict[Hashable, list[int]] = field(default_factory=dict)  # key -> [blocks, refs]

    @property
    def free(self) -> int:
        return self.capacity - self.used - self.cached - self.retained

    @property
    def available(self) -> int:
        """Blocks an allocation can get: free plus evictable cached ones."""
        return self.capacity - self.used

    def allocate(self, n: int) -> bool:
        """Put ``n`` blocks in use, evicting cached prefixes (LRU) if needed; False
        (and nothing changed) if even that is not enough."""
        if n > self.available:
            return False
        short = n - self.free
        while short > 0:
            if not self._lru:
                self._release_retained()
            key, blocks = next(iter(self._lru.items()))
            take = min(short, blocks)
            if take == blocks:
                del self._lru[key]
            else:
                self._lru[key] = blocks - take  # the tail goes first; the head stays
            self.cached -= take
            self.evicted += take
            short -= take
        self.used += n
        return True

    def release(self, n: int, key: Hashable | None = None, keep: int = 0,
                retain: bool = False) -> None:
        """Take ``n`` blocks out of use; ``keep`` of them stay cached under ``key``
        (added to what it has cached, all of it now the most recently used), or
        retained (``retain``)."""
        if not 0 <= keep <= n <= self.used:
            raise ValueError(f"cannot release {n} blocks keeping {keep} ({self.used} in use)")
        self.used -= n
        if key is None or not keep:
            return
        if retain:
            self._retained[key] = self._retained.get(key, 0) + keep
            self.retained += keep
        else:
            self._lru[key] = self._lru.pop(key, 0) + keep
            self.cached += keep

    def _release_retained(self) -> None:
        """An allocation found no cached block to evict: give up a retained prefix."""
        assert self.pick_retained is not None and self._retained, "accounting error"
        key = self.pick_retained()
        blocks = self._retained.pop(key)
        self.retained -= blocks
        if self.on_released is not None:
            self.on_released(key, blocks)
        self._lru[key] = self._lru.pop(key, 0) + blocks
        self._lru.move_to_end(key, last=False)  # evicted first
        self.cached += blocks

    def unretain(self, key: Hashable, evict_first: bool = False) -> None:
        """End ``key``'s retention: its blocks become ordinary cache, the most recent,
        or with ``evict_first`` the next to be evicted (an ended program's)."""
        blocks = self._retained.pop(key, 0)
        if blocks:
            self.retained -= blocks
            self._lru[key] = self._lru.pop(key, 0) + blocks
            self._lru.move_to_end(key, last=not evict_first)
            self.cached += blocks

    def retained_blocks(self, key: Hashable) -> int:
        return self._retained.get(key, 0)

    def hit(self, key: Hashable, max_blocks: int) -> int:
        """Move up to ``max_blocks`` of ``key``'s retained or cached prefix into use;
        returns how many. What is left of a longer cached entry stays cached."""
        kept = self._retained.pop(key, 0)
        if kept:  # retention ends at the hit; what the call does not use is cached
            self.retained -= kept
            take = min(kept, max_blocks)
            self.used += take
            if kept > take:
                self._lru[key] = self._lru.pop(key, 0) + kept - take
                self.cached += kept - take
            return take
        blocks = self._lru.get(key, 0)
        take = min(blocks, max_blocks)
        if not take:
            return 0
        if take == blocks:
            del self._lru[key]
        else:
            self._lru[key] = blocks - take
        self.cached -= take
        self.used += take
        return take

    def drop(self, key: Hashable) -> None:
        """Forget ``key``'s cached and retained prefix (its blocks become free)."""
        self.cached -= self._lru.pop(key, 0)
        self.retained -= self._retained.pop(key, 0)

    def cached_blocks(self, key: Hashable) -> int:
        return self._lru.get(key, 0)

    def acquire_shared(self, key: Hashable, blocks: int) -> tuple[int, bool]:
        """One more user of a shared prefix of ``blocks`` blocks. Returns (blocks hit,
        ok); the first user allocates what is not cached and computes it (0 hit)."""
        entry = self._shared.get(key)
        if entry is not None:
            entry[1] += 1
            return entry[0], True
        hit = self.hit(key, blocks)
        if not self.allocate(blocks - hit):
            if hit:
                self.release(hit, key, hit)
            return 0, False
        self._shared[key] = [blocks, 1]
        return (blocks if hit == blocks else 0), True

    def release_shared(self, key: Hashable) -> None:
        """One user fewer; the last one leaves the prefix cached."""
        entry = self._shared[key]
        entry[1] -= 1
        if entry[1] == 0:
            del self._shared[key]
            self.release(entry[0], key, entry[0])


@dataclass
class HostPool:
    """The host swap pool: a count of blocks (its layout is the swap kernel's business)."""

    capacity: int
    used: int = 0

    def reserve(self, n: int) -> bool:
        if self.used + n > self.capacity:
            return False
        self.used += n
        return True

    def release(self, n: int) -> None:
        self.used -= n
