"""Names of what a benchmark compares: a policy, optionally with KV retention, and the
scope of a chat's program.

``atlas+retain`` is ATLAS with ``kv_retention`` on
(``autellix_engine.extension.retention_pins``), on the real engine (``autellix bench``)
and in the simulator (``autellix simulate``) alike. A ``/run`` suffix
(``atlas+retain/run``) makes each turn of a chat a program of its own, as if LangGraph
runs had no thread; without it a chat's thread is one program across its turns.
"""

from __future__ import annotations

from typing import NamedTuple

RETAIN_SUFFIX = "+retain"
RUN_SCOPE_SUFFIX = "/run"


class Variant(NamedTuple):
    policy: str
    kv_retention: bool
    scope: str  # "thread" or "run": what a chat's program is


def split_variant(name: str) -> Variant:
    """The policy, retention and program scope a variant name stands for."""
    scope = "thread"
    if name.endswith(RUN_SCOPE_SUFFIX):
        name, scope = name[: -len(RUN_SCOPE_SUFFIX)], "run"
    if name.endswith(RETAIN_SUFFIX):
        return Variant(name[: -len(RETAIN_SUFFIX)], True, scope)
    return Variant(name, False, scope)
