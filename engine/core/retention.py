"""Which programs' KV is retained between their calls, and which goes first (pure Python).

A program's call finishes; its program goes on (a tool runs, a human answers) and its
next call will start with the same history plus a little more. Stock vLLM leaves the
finished call's blocks in the prefix cache, where any allocation may evict them least
recently freed first. The retention table instead holds each live program's blocks
(the scheduler pins them, ``autellix_engine.extension.retention_pins``) and gives them up in an
order that uses what the engine knows:

* a program whose program has **ended** (the front end's notice) gives up its blocks at
  once, and they are reused before any other cached block;
* under memory pressure, the **worst-priority** program goes first (the policy's
  ``engine_priority`` of its last call: the client's priority, then the queue level);
* among equals, the program **expected back last** goes first (its last call's end plus
  the gap observed after its calls: its own, else that of calls from the same graph
  node across programs, else across all), as KVFlow orders agents by steps to
  execution;
* a program idle for longer than ``ttl_s`` (a session that was never ended) releases
  its blocks to the ordinary prefix cache.

Retention never makes an active call wait: the scheduler releases retained blocks
before vLLM would refuse an allocation (see ``pins.KVRetention.make_room``).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

#: Weight of the newest observed gap in a program's expected gap (an EWMA).
GAP_EWMA = 0.5


@dataclass(slots=True)
class RetainedKV:
    """One program's retained device blocks."""

    program_id: str
    block_ids: list[int]  # pinned blocks, prefix order (a block's chain from the start)
    priority: int  # the policy's engine priority of its last call: larger goes first
    since: float  # when its last call finished (time.time())
    node: str = ""  # the graph node (thread label) of its last call

    @property
    def num_blocks(self) -> int:
        return len(self.block_ids)


@dataclass
class RetentionTable:
    """Live programs' retained blocks and the order in which they are given up."""

    ttl_s: float
    entries: dict[str, RetainedKV] = field(default_factory=dict)
    _gap: dict[str, float] = field(default_factory=dict)  # program -> expected gap (s)
    _node_gap: dict[str, float] = field(default_factory=dict)  # node -> expected gap (s)
    _mean_gap: float | None = None

    @property
    def pinned_blocks(self) -> int:
        return sum(e.num_blocks for e in self.entries.values())

    def get(self, program_id: str) -> RetainedKV | None:
        return self.entries.get(program_id)

    def retain(self, program_id: str, block_ids: list[int], priority: int,
               now: float, node: str = "") -> list[int]:
        """Hold ``block_ids`` for the program (added to what it holds); returns the ids
        that are new to the entry (the caller pins exactly those)."""
        entry = self.entries.get(program_id)
        if entry is None:
            self.entries[program_id] = RetainedKV(program_id, list(block_ids), priority, now,
                                                  node)
            return list(block_ids)
        held = set(entry.block_ids)
        new = [b for b in block_ids if b not in held]
        entry.block_ids += new
        entry.priority, entry.since, entry.node = priority, now, node
        return new

    def pop(self, program_id: str) -> RetainedKV | None:
        return self.entries.pop(program_id, None)

    def observe_return(self, program_id: str, arrival: float) -> None:
        """A call of the program arrived: learn the gap since its last call ended."""
        entry = self.entries.get(program_id)
        if entry is None:
            return
        gap = max(0.0, arrival - entry.since)
        _learn(self._gap, program_id, gap)
        _learn(self._node_gap, entry.node, gap)
        mean = self._mean_gap
        self._mean_gap = gap if mean is None else GAP_EWMA * gap + (1 - GAP_EWMA) * mean

    def expected_return(self, entry: RetainedKV) -> float:
        """When the program's next call is expected: after its own gap, else its last
        node's, else the mean gap."""
        gap = self._gap.get(entry.program_id)
        if gap is None:
            gap = self._node_gap.get(entry.node, self._mean_gap)
        return entry.since + (gap if gap is not None else 0.0)

    def release_key(self, entry: RetainedKV) -> tuple[int, float]:
        """Larger is released first: worst priority, then expected back last."""
        return entry.priority, self.expected_return(entry)

    def release_order(self, exclude: str | None = None) -> list[RetainedKV]:
        """Entries in the order pressure releases them."""
        entries = [e for e in self.entries.values() if e.program_id != exclude]
        entries.sort(key=self.release_key, reverse=True)
        return entries

    def worst(self, exclude: str | None = None) -> RetainedKV | None:
        """The entry pressure releases next (``release_order()[0]``, in one pass)."""
        return max((e for e in self.entries.values() if e.program_id != exclude),
                   key=self.release_key, default=None)

    def expired(self, now: float) -> list[str]:
        return [pid for pid, e in self.entries.items() if now - e.since > self.ttl_s]

    def forget(self, program_id: str) -> None:
        """The program ended: drop what was learnt about it too."""
        self._gap.pop(program_id, None)


def _learn(gaps: dict[str, float], key: str, gap: float) -> None:
    old = gaps.get(key)
    gaps[key] = gap if old is None else GAP_EWMA * gap + (1 - GAP_EWMA) * old


class ContextHistory:
    """Each program's context length after its last finished call (least recently
    used forgotten first, past ``capacity``): what its next call could reuse, so the
    scheduler can count what it computed again (``CallStats.reprefilled_tokens``)."""

    def __init__(self, capacity: int = 65536) -> None:
        self._tokens: OrderedDict[str, int] = OrderedDict()
        self._capacity = capacity

    def remember(self, program_id: str, tokens: int) -> None:
        self._tokens[program_id] = tokens
        self._tokens.move_to_end(program_id)
        if len(self._tokens) > self._capacity:
            self._tokens.popitem(last=False)

    def get(self, program_id: str) -> int:
        return self._tokens.get(program_id, 0)

    def forget(self, program_id: str) -> None:
        """The program ended: a later program with its id has no history yet."""
        self._tokens.pop(program_id, None)
