"""vLLM glue: a V1 ``Scheduler`` that schedules programs with an ``autellix_engine.core``.

Thin by design: every decision is the policy's; this module only maps vLLM requests
to ``CallState`` objects and back. Per engine step:

1. ``schedule``: on a decision step, refresh ``request.priority`` (the policy's
   ``engine_priority``: the client's own priority as a strict outer key, then the queue
   level) and the queues' order, then, for preemptive policies, evict the
   lowest-priority running calls that block a better waiting call (``max_num_seqs`` or
   KV cache full; stock vLLM never does this), then let vLLM's own ``schedule`` form
   the batch (``scheduling_policy="priority"``: strict priority, FCFS within a level).
2. ``update_from_output``: charge the step's service to the calls it scheduled (and
   demote), and one step of waiting to every other active call (and promote). New
   levels reach ``request.priority`` at the next decision step, so the waiting heap
   never holds a stale key.
3. ``_free_request``: report the call's statistics to the front end on the finished
   request's ``kv_transfer_params``; with KV retention on, pin the finished call's
   cached blocks for its program's next call (``autellix_engine.extension.retention_pins``).

Program identity: our ``program_id`` key in ``extra_args`` (``vllm_xargs``), else vLLM's
own ``session_id`` (request body ``session_id``, the ``X-Session-ID`` header or
``vllm_xargs.session_id``), else the call is a program of its own. Without program
service from a front end, the scheduler's local process table (TTL-collected) keeps it.

The subclass targets vllm(-cpu) 0.32.0, where async scheduling is off on CPU. On GPUs
with async scheduling on, use :class:`AutellixAsyncScheduler`.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from vllm.v1.core.sched.async_scheduler import AsyncScheduler
from vllm.v1.core.sched.request_queue import SchedulingPolicy
from vllm.v1.core.sched.scheduler import Scheduler
from vllm.v1.request import Request, RequestStatus

from autellix_engine.core import CallState, PolicyConfig, create_policy
from autellix_engine.core.charging import CallBook
from autellix_engine.core.config import DEFAULT_POLICY, PolicyKind
from autellix_engine.core.decisions import may_evict, plan_evictions, victim_key
from autellix_engine.core.process_table import LocalPrograms
from autellix_engine.core.retention import ContextHistory
from autellix_engine.core.wire import GAUGES_KEY, SCHEDULER_CONFIG_KEY, STATS_KEY, ProgramTag
from autellix_engine.extension.request_queue import PolicyRequestQueue
from autellix_engine.extension.retention_pins import KVRetention

logger = logging.getLogger(__name__)


class _ProgramAwareMixin:
    """The program-aware hooks, shared by the sync and async scheduler classes.

    The decisions and the bookkeeping live in ``autellix_engine.core`` (``CallBook``:
    calls and their charging; ``decisions``: who evicts whom; ``LocalPrograms``;
    ``ContextHistory``) and in ``retention_pins``/``swap_connector``; these hooks map
    vLLM's requests to them.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = dict(self.vllm_config.additional_config or {}).get(SCHEDULER_CONFIG_KEY, {})
        self._policy_config = PolicyConfig.from_dict(settings.get("policy_config", {}))
        # Naming our class is asking for program scheduling: ATLAS unless told otherwise.
        # (``self.policy`` is vLLM's scheduling policy; ours is the program policy.)
        self._program_policy = create_policy(settings.get("policy", DEFAULT_POLICY),
                                             self._policy_config)
        self._book = CallBook(self._program_policy, self._policy_config)
        self._local = LocalPrograms(self._program_policy.updated_program_service,
                                    self._policy_config.program_ttl_s)
        self._contexts = ContextHistory()
        self._last_calls: set[str] = set()  # calls whose program ends with them
        self._step_tokens: dict[str, int] = {}  # req -> tokens this step schedules
        self._step_started: float | None = None
        self._last_step_end = time.monotonic()
        self._steps_since_gc = 0
        self._steps_to_decision = 0
        self._swap = self._find_swap_connector()  # vLLM's __init__ built self.connector
        self._retention = self._make_retention(bool(settings.get("kv_retention", False)))
        if self._program_policy.kind is not PolicyKind.FCFS:
            # Our order needs vLLM's priority queue; `--scheduling-policy priority` is
            # then not one more flag to forget. The queues are still empty here.
            self.policy = SchedulingPolicy.PRIORITY
            self.waiting = PolicyRequestQueue(self._sort_key)
            self.kv_holding_waiting = PolicyRequestQueue(self._sort_key)
        logger.info("Autellix scheduler: policy=%s", self._program_policy.kind.value)

    def _make_retention(self, enabled: bool) -> KVRetention | None:
        if not enabled:
            return None
        if not self.cache_config.enable_prefix_caching:
            logger.warning("KV retention needs prefix caching; it is off")
            return None
        host = self._swap.planner if self._swap is not None else None
        retention = KVRetention(self.kv_cache_manager, self._policy_config.program_ttl_s,
                                host)
        retention.guard_allocations(self._own_program)
        logger.info("KV retention on (%s tier)", "device and host" if host else "device")
        return retention

    def _own_program(self, request: Request) -> str | None:
        """The program whose pins a waiting call's prefix hit may include (kept)."""
        if request.status == RequestStatus.RUNNING:
            return None
        call = self._book.get(request.request_id)
        return call.program_id if call is not None else None

    def _sort_key(self, request: Request) -> tuple:
        """The policy's order (``Policy.sort_key``), as the simulators use it."""
        call = self._book.get(request.request_id)
        if call is None:  # not ours (cannot happen in vLLM 0.32.0): vLLM's own order
            return (request.priority, 0, request.arrival_time, -1)
        return self._program_policy.sort_key(call)

    # -- arrivals ----------------------------------------------------------------
    def add_request(self, request: Request) -> None:
        if request.request_id in self.requests or request.request_id in self._book:
            super().add_request(request)  # a streaming-input continuation of an active call
            return
        tag = ProgramTag.from_extra_args(
            request.sampling_params.extra_args if request.sampling_params else None,
            request.request_id, session_id=getattr(request, "session_id", None),
        )
        ended = [p for p in tag.ended_programs if p != tag.program_id]
        for program_id in ended:
            self._contexts.forget(program_id)
        if self._retention is not None:
            self._retention.end(ended)
            self._retention.table.observe_return(tag.program_id, request.arrival_time)
            if self._retention.host is not None:
                self._retention.host.expect(request.request_id, tag.program_id)
        if tag.program_service is not None:  # the front end's table: the authority
            service, wait = tag.program_service, tag.program_wait or 0.0
            program_arrival = (request.arrival_time if tag.program_arrival is None
                               else tag.program_arrival)
        else:
            service, wait, program_arrival = self._local.inherit(
                tag.program_id, tag.thread_id, request.request_id, request.arrival_time)
        call = self._book.admit(
            request.request_id, tag.program_id, tag.thread_id, request.arrival_time,
            client_priority=request.priority, start_service=service, program_wait=wait,
            remaining_work=tag.remaining_work or 0.0, program_arrival=program_arrival)
        if tag.is_last_call or tag.program_id == request.request_id:
            self._last_calls.add(request.request_id)  # a one-off: nothing to retain for
        # Before vLLM queues it: the waiting heap orders by this key from the start.
        request.priority = self._program_policy.engine_priority(call)
        super().add_request(request)

    # -- one engine step ---------------------------------------------------------
    def schedule(self, throttle_prefills: bool = False):
        if self._decision_due():
            self._reorder()
            if self._program_policy.preemptive:
                self._preempt_for_waiting()
        output = super().schedule(throttle_prefills)
        for new in output.scheduled_new_reqs:
            self._on_admitted(new.req_id, new.num_computed_tokens)
        self._step_tokens = output.num_scheduled_tokens
        self._step_started = time.monotonic()
        return output

    def _on_admitted(self, req_id: str, hit_tokens: int) -> None:
        """A call's first scheduling: count what it reused, release its program's pins."""
        call, request = self._book.get(req_id), self.requests.get(req_id)
        if call is None or request is None or request.num_preemptions:
            return  # a resumption (counted at its first admission)
        stats = call.stats
        before = self._contexts.get(call.program_id)
        stats.reprefilled_tokens = max(0, min(before, request.num_prompt_tokens) - hit_tokens)
        if self._retention is not None:
            hit_blocks = self.kv_cache_manager.get_block_ids(req_id)[0][
                :hit_tokens // self.block_size]
            pinned = self._retention.on_admitted(call.program_id, hit_blocks)
            reloaded = self._swap.planner.reload_tokens(req_id) if self._swap else 0
            stats.retained_tokens = min(hit_tokens, pinned * self.block_size + reloaded)

    def _decision_due(self) -> bool:
        """Multi-step scheduling: re-rank and preempt once every N steps."""
        if self._steps_to_decision > 0:
            self._steps_to_decision -= 1
            return False
        self._steps_to_decision = self._policy_config.decision_interval_steps - 1
        return True

    def update_from_output(self, scheduler_output, model_runner_output):
        self._charge_step(time.monotonic())
        return super().update_from_output(scheduler_output, model_runner_output)

    def _charge_step(self, now: float) -> None:
        """Charge the step that just ran (``CallBook.charge_step``)."""
        started = self._step_started if self._step_started is not None else now
        requests = self.requests
        scheduled = {}
        for req_id, n in self._step_tokens.items():
            req = requests.get(req_id)
            if req is not None:  # vLLM advanced num_computed_tokens when it scheduled
                scheduled[req_id] = (n, n == 1 and req.num_computed_tokens - 1
                                     >= req.num_prompt_tokens)
        self._book.charge_step(scheduled, max(0.0, now - started),
                               max(0.0, now - self._last_step_end))
        self._last_step_end = now
        self._step_tokens = {}
        self._step_started = None
        self._steps_since_gc += 1
        if self._steps_since_gc >= 1000:
            self._steps_since_gc = 0
            self._local.collect_stale()
            if self._retention is not None:
                self._retention.collect(time.time())

    # -- ordering and proactive preemption -----------------------------------------
    def _reorder(self) -> None:
        """Apply the changed calls' queues to ``request.priority`` and re-order."""
        changed = False
        for call in self._book.take_changed():
            req = self.requests.get(call.call_id)
            if req is not None:
                req.priority = self._program_policy.engine_priority(call)
                changed = True
        if changed:
            for queue in (self.waiting, self.kv_holding_waiting):
                if isinstance(queue, PolicyRequestQueue):
                    queue.reorder()
        if self._program_policy.preemptive:
            # vLLM walks the running list in order: it hands out the token budget, and
            # a call it must give up for memory ends the walk (the calls after it wait
            # a step). Best first, in the order calls give way: the walk's victim is
            # always the last (``decisions.victim_key``; the simulator does the same).
            self.running.sort(key=self._victim_key)

    def _preempt_for_waiting(self) -> None:
        """Evict running calls of a worse queue that block better waiting calls
        (``autellix_engine.core.decisions``: the simulator decides by the same rule)."""
        waiting = self.waiting
        if not isinstance(waiting, PolicyRequestQueue) or not waiting or not self.running:
            return
        if not may_evict(max(r.priority for r in self.running),
                         waiting.peek_request().priority):
            return
        slots = self.max_num_active_reqs - len(self.running)
        free_blocks = self.kv_cache_manager.block_pool.get_num_free_blocks()
        if self._retention is not None:  # retained blocks yield before any call does
            free_blocks += self._retention.releasable_blocks()
        # vLLM's own order of memory victims: one order for both kinds of eviction.
        victims = sorted(self.running, key=self._victim_key, reverse=True)
        candidates = waiting.best(len(self.running) + max(slots, 0))
        n = plan_evictions(((c.priority, self._blocks_needed(c)) for c in candidates),
                           [(v.priority, self._blocks_held(v)) for v in victims],
                           slots, free_blocks, self._policy_config.max_preemptions_per_step)
        if not n:
            return
        now = time.monotonic()
        evicted = set(victims[:n])
        self.running = [r for r in self.running if r not in evicted]
        for victim in victims[:n]:
            self._preempt_request(victim, now)
            # vLLM's own preemptions happen inside schedule(), after it reads this set;
            # ours come before, and a victim resumed in this very step must be sent to
            # the worker whole (vLLM sends all token ids of requests not in the set).
            self.prev_step_scheduled_req_ids.discard(victim.request_id)

    def _victim_key(self, request: Request) -> tuple:
        call = self._book.get(request.request_id)
        return victim_key(request.priority, request.arrival_time, call.seq if call else -1)

    def _blocks_needed(self, request: Request) -> int:
        # What vLLM allocates to admit it: its tokens, not one more (vLLM's own
        # test_priority_scheduling_preemption_and_resumption_when_out_of_kv caught a
        # +1 here evicting a call that fit, only for vLLM to re-admit it).
        return math.ceil(request.num_tokens / self.block_size)

    def _blocks_held(self, request: Request) -> int:
        return math.ceil(request.num_computed_tokens / self.block_size)

    def _preempt_request(self, request: Request, timestamp: float, **kwargs: Any) -> None:
        # Every preemption (ours and vLLM's own) passes here while the request still
        # holds its blocks: the swap connector copies them out before they are reused.
        if self._swap is not None:
            block_ids = self.kv_cache_manager.get_block_ids(request.request_id)[0]
            self._swap.on_preempt(request, block_ids)
        super()._preempt_request(request, timestamp, **kwargs)

    def _remember_history(self, call: CallState, request: Request) -> None:
        """Before vLLM frees a finished call: its program's context so far, and (with
        retention on) the pins that keep its cached blocks for the next call."""
        self._contexts.remember(call.program_id, request.num_computed_tokens)
        if self._retention is not None and call.call_id not in self._last_calls:
            # LangGraph threads are "node:task-id" (checkpoint namespaces): the node.
            self._retention.on_call_finished(
                request, call.program_id, self._program_policy.engine_priority(call),
                time.time(), call.thread_id.split(":", 1)[0])

    def reset_prefix_cache(self, *args: Any, **kwargs: Any) -> bool:
        if self._retention is not None:  # a reset needs every block free
            self._retention.release_all()
        return super().reset_prefix_cache(*args, **kwargs)

    def _find_swap_connector(self):
        """Our swap connector when vLLM built one (swap mode), else None."""
        if self.connector is None:
            return None
        from autellix_engine.extension.swap_connector import (
            AutellixSwapConnector,  # only with swap mode
        )

        return self.connector if isinstance(self.connector, AutellixSwapConnector) else None

    # -- completion --------------------------------------------------------------
    def _free_request(self, request: Request, delay_free_blocks: bool = False):
        call = self._book.get(request.request_id)
        aborted = request.status == RequestStatus.FINISHED_ABORTED
        if call is not None and not aborted:
            self._remember_history(call, request)
        kv_params, ec_params = super()._free_request(request, delay_free_blocks)
        call = self._book.finish(request.request_id)
        self._last_calls.discard(request.request_id)
        if call is None:
            return kv_params, ec_params
        stats = call.stats
        stats.preemptions = request.num_preemptions
        stats.level = call.level
        if self._swap is not None:
            stats.swap = self._swap.pop_call_stats(request.request_id) or stats.swap
        self._local.finished(call, aborted)
        return {**(kv_params or {}), STATS_KEY: stats.to_dict(),
                GAUGES_KEY: self._gauges()}, ec_params

    def _gauges(self) -> dict[str, int]:
        """Our part of the engine's state (``EngineGauges``), sent with each finished
        call: vLLM's own part reaches the front end through its step statistics."""
        gauges: dict[str, int] = {}
        if self._swap is not None:
            gauges["host_pool_used_blocks"] = self._swap.planner.pool.used
            gauges["retained_host_blocks"] = self._swap.planner.retained_blocks
        if self._retention is not None:
            gauges["retained_device_blocks"] = self._retention.table.pinned_blocks
        return gauges


class AutellixScheduler(_ProgramAwareMixin, Scheduler):
    """Program-aware scheduler for engines without async scheduling (the CPU build)."""


class AutellixAsyncScheduler(_ProgramAwareMixin, AsyncScheduler):
    """Program-aware scheduler for engines with async scheduling on (GPU default)."""
