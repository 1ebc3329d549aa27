"""Names of what a benchmark compares: a policy, optionally with KV retention.

``atlas+retain`` is ATLAS with ``kv_retention`` on (``autellix_engine.retention``), on the
real engine (``autellix bench``) and in the simulator (``autellix simulate``) alike.
"""

from __future__ import annotations

RETAIN_SUFFIX = "+retain"


def split_variant(name: str) -> tuple[str, bool]:
    """``(policy, kv_retention)`` of a variant name."""
    if name.endswith(RETAIN_SUFFIX):
        return name[: -len(RETAIN_SUFFIX)], True
    return name, False
