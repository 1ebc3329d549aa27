"""Span attribute names of program scheduling, and a call's statistics as attributes.

Shared by the server's spans (``autellix_engine.server``) and the chat model's
(``autellix_lg``), so a trace reads the same in embedded and remote mode.
"""

from __future__ import annotations

from dataclasses import fields

from autellix_engine.policy.calls import CallStats

PROGRAM_ID = "autellix.program.id"
THREAD_ID = "autellix.thread.id"
CALL_ID = "autellix.call.id"
POLICY = "autellix.policy"
QUEUE_LEVEL = "autellix.queue.level"  # queue at completion (0 = top)
QUEUE_START_LEVEL = "autellix.queue.start_level"  # queue on arrival
QUEUE_WAIT_S = "autellix.queue.wait_s"  # unscheduled seconds in the engine
PREEMPTIONS = "autellix.preemptions"
SERVICE = "autellix.service"  # attained service of the call (policy's unit)
PREFILL_S = "autellix.engine.prefill_s"  # engine time computing the prompt
DECODE_S = "autellix.engine.decode_s"  # engine time decoding
TIME_TO_FIRST_TOKEN_S = "autellix.time_to_first_token_s"
#: Prefix of every ``CallStats`` field on a chat span (``autellix.call.<field>``).
CALL_STATS_PREFIX = "autellix.call."


def call_stats(stats: CallStats) -> dict[str, float | int]:
    """A call's statistics as span attributes: the named ones above, and every
    ``CallStats`` field (swap counters too) as ``autellix.call.<field>``, so a new
    statistic reaches the spans without a change here."""
    attrs: dict[str, float | int] = {
        QUEUE_LEVEL: stats.level, QUEUE_START_LEVEL: stats.start_level,
        QUEUE_WAIT_S: stats.queue_wait_s, PREEMPTIONS: stats.preemptions,
        SERVICE: stats.service, PREFILL_S: stats.prefill_s, DECODE_S: stats.decode_s,
    }
    for f in fields(stats):
        value = getattr(stats, f.name)
        if f.name == "swap":
            attrs |= {f"{CALL_STATS_PREFIX}swap.{g.name}": getattr(value, g.name)
                      for g in fields(value)}
        else:
            attrs[f"{CALL_STATS_PREFIX}{f.name}"] = value
    return attrs
