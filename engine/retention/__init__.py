"""Program-aware KV retention between a program's calls (beyond the paper).

``table`` is the pure policy (what is retained, what goes first); ``pins`` is the vLLM
glue (block-pool references and the swap connector's host tier). See
``docs/design.md`` ("KV retention").
"""

from autellix_engine.retention.table import RetainedKV, RetentionCounters, RetentionTable

__all__ = ["RetainedKV", "RetentionCounters", "RetentionTable"]
