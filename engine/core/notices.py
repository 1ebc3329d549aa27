"""End-of-program notices from the front end to its replicas (pure Python).

A replica retains a live program's KV between calls; the front end knows when the
program ends (its LangGraph run finished, ``Program.end``, the server's end endpoint).
The notice rides on the next request the front end sends that replica
(``ProgramTag.ended_programs``): retained KV only matters to later requests, and each
of them delivers the notices before the engine schedules it.
"""

from __future__ import annotations

from collections import deque

#: Notices held per replica (the oldest are dropped beyond: the replica's TTL covers).
PENDING_LIMIT = 4096
#: Notices one request carries.
PER_REQUEST = 256


class EndNotices:
    """Programs ended at the front end that each replica has not been told of yet."""

    def __init__(self, replicas: int) -> None:
        self._pending = [deque[str](maxlen=PENDING_LIMIT) for _ in range(replicas)]

    def ended(self, program_id: str) -> None:
        for pending in self._pending:
            pending.append(program_id)

    def take(self, replica: int) -> tuple[str, ...]:
        """Notices for the next request to ``replica`` (no longer pending)."""
        pending = self._pending[replica]
        return tuple(pending.popleft() for _ in range(min(PER_REQUEST, len(pending))))
