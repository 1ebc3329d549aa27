"""The scheduling decisions, one rule each, shared by the vLLM scheduler and the simulator.

The engine's scheduler (``autellix_engine.extension.scheduler``) and the simulator
(``autellix_workloads.sim.des``) hold calls in different structures (vLLM requests and
queues; heaps of simulated calls), but they decide by these functions, so what the
simulator predicts is what the engine does (``tests/unit/test_differential.py`` runs
one trace through both):

* **admission order**: ``Policy.sort_key`` (strict client priority, then the queue,
  then program and call arrival);
* **which running call gives way**, for a better waiting call and for memory alike:
  :func:`victim_key`, largest first, which is vLLM's own choice of a memory victim
  under priority scheduling (the worst ``request.priority``, the newest call among
  equals); under FCFS vLLM gives up the call admitted last, and so does the simulator;
* **whether a waiting call may evict**: :func:`may_evict`, strict priority by
  ``Policy.engine_priority`` (client priority and queue level only): a call never
  evicts one of its own queue, however the queue orders them;
* **how many to evict**: :func:`plan_evictions`, the walk over the best waiting calls;
* **what a step charges**: :func:`step_service`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def victim_key(engine_priority: int, arrival: float, seq: int) -> tuple[int, float, int]:
    """Running calls give way in decreasing order of this key (worst queue, then the
    newest call): vLLM's ``max(running, key=(priority, arrival_time))``, with the
    order calls reached the scheduler (``seq``) breaking ties of arrival (the parallel
    calls of one program stage)."""
    return engine_priority, arrival, seq


def may_evict(victim_priority: int, candidate_priority: int) -> bool:
    """A waiting call evicts a running one only from a strictly worse queue."""
    return victim_priority > candidate_priority


def plan_evictions(candidates: Iterable[tuple[int, int]], victims: Sequence[tuple[int, int]],
                   free_slots: int, free_blocks: int, cap: int | None = None) -> int:
    """How many of ``victims`` to evict so that better waiting calls can run.

    Args:
        candidates: ``(engine priority, blocks it needs)`` of the waiting calls, best
            first (at most as many as can run).
        victims: ``(engine priority, blocks it holds)`` of the running calls, in
            :func:`victim_key` order, worst first.
        free_slots: running slots left (``max_num_seqs`` minus running calls).
        free_blocks: KV blocks free now (blocks that retention would give up count).
        cap: the most evictions per decision (``PolicyConfig.max_preemptions_per_step``).

    Returns:
        ``n``: evict ``victims[:n]``. Each candidate takes a free slot and its blocks
        when there are enough; otherwise the worst remaining victim gives way, if it
        is of a strictly worse queue. The walk stops at the first candidate that can
        neither fit nor evict.
    """
    chosen = 0
    for priority, need in candidates:
        if free_slots > 0 and need <= free_blocks:
            free_slots -= 1
            free_blocks -= need
            continue
        if chosen == len(victims) or (cap is not None and chosen >= cap):
            break
        victim_priority, held = victims[chosen]
        if not may_evict(victim_priority, priority):
            break
        chosen += 1
        free_blocks += held - need
    return chosen


def step_service(tokens: int, decoding: bool, prefill_token_weight: float) -> float:
    """Service a call earns in a step, in the tokens unit: one per decoded token,
    ``prefill_token_weight`` per prompt (or recomputed) token."""
    return 1.0 if decoding else prefill_token_weight * tokens
