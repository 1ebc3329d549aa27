"""vLLM glue: a V1 ``Scheduler`` that schedules programs with an ``autellix_engine.policy``.

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
   cached blocks for its program's next call (``autellix_engine.retention``).

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
from collections import OrderedDict
from typing import Any

from vllm.v1.core.sched.async_scheduler import AsyncScheduler
from vllm.v1.core.sched.request_queue import SchedulingPolicy
from vllm.v1.core.sched.scheduler import Scheduler
from vllm.v1.request import Request, RequestStatus

from autellix_engine.config import EngineConfig
from autellix_engine.policy import CallState, PolicyConfig, ProcessTable, ServiceUnit, create_policy
from autellix_engine.policy.config import PolicyKind
from autellix_engine.policy.waits import WaitLedger
from autellix_engine.policy.wire import STATS_KEY, ProgramTag
from autellix_engine.request_queue import PolicyRequestQueue
from autellix_engine.retention.pins import KVRetention

logger = logging.getLogger(__name__)

#: Key of our settings in ``VllmConfig.additional_config``.
CONFIG_KEY = "autellix"
#: The policy when ``additional_config`` names none (``vllm serve --scheduler-cls`` alone):
#: the engine's own default.
DEFAULT_POLICY = EngineConfig.policy
#: Programs whose last context length is remembered for ``CallStats.reprefilled_tokens``
#: (least recently used forgotten first; a few bytes each).
HISTORY_PROGRAMS = 65536


class _ProgramAwareMixin:
    """The program-aware hooks, shared by the sync and async scheduler classes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = dict(self.vllm_config.additional_config or {}).get(CONFIG_KEY, {})
        self._policy_config = PolicyConfig.from_dict(settings.get("policy_config", {}))
        # Naming our class is asking for program scheduling: ATLAS unless told otherwise.
        self._policy = create_policy(settings.get("policy", DEFAULT_POLICY), self._policy_config)
        self._tokens_unit = self._policy_config.service_unit is ServiceUnit.TOKENS
        self._calls: dict[str, CallState] = {}
        self._seq = 0
        self._level_changed: dict[str, CallState] = {}  # since the last decision step
        self._step_tokens: dict[str, int] = {}  # req -> tokens this step schedules
        self._last_tokens: dict[str, int] = {}  # the previous step's
        self._waits = WaitLedger(self._policy)  # every active call not scheduled
        self._step_started: float | None = None
        self._last_step_end = time.monotonic()
        # Used only for requests that carry no program service (see autellix_engine.policy.wire).
        self._local_table = ProcessTable(
            self._policy.updated_program_service, ttl_s=self._policy_config.program_ttl_s
        )
        self._local_calls: set[str] = set()  # calls accounted in the local table
        self._steps_since_gc = 0
        self._steps_to_decision = 0
        self._swap = self._find_swap_connector()  # vLLM's __init__ built self.connector
        self._history: OrderedDict[str, int] = OrderedDict()  # program -> last context
        self._last_calls: set[str] = set()  # calls whose program ends with them
        self._retention = self._make_retention(bool(settings.get("kv_retention", False)))
        if self._policy.kind is not PolicyKind.FCFS:
            # Our order needs vLLM's priority queue; `--scheduling-policy priority` is
            # then not one more flag to forget. The queues are still empty here.
            self.policy = SchedulingPolicy.PRIORITY
            self.waiting = PolicyRequestQueue(self._sort_key)
            self.kv_holding_waiting = PolicyRequestQueue(self._sort_key)
        logger.info("Autellix scheduler: policy=%s", self._policy.kind.value)

    def _make_retention(self, enabled: bool) -> KVRetention | None:
        if not enabled:
            return None
        if not self.cache_config.enable_prefix_caching:
            logger.warning("KV retention needs prefix caching; it is off")
            return None
        host = self._swap.planner if self._swap is not None else None
        retention = KVRetention(self.kv_cache_manager, self._policy_config.program_ttl_s,
                                host)
        # vLLM refuses an allocation (a waiting call stays out, or a running one is
        # preempted) when the pool is short: release retained programs and retry
        # first, so retention never holds memory an active call needs.
        inner = self.kv_cache_manager.allocate_slots

        def allocate_slots(request: Request, *args: Any, **kwargs: Any):
            blocks = inner(request, *args, **kwargs)
            while blocks is None and retention.make_room(self._own_program(request)):
                blocks = inner(request, *args, **kwargs)
            return blocks

        self.kv_cache_manager.allocate_slots = allocate_slots
        logger.info("KV retention on (%s tier)", "device and host" if host else "device")
        return retention

    def _own_program(self, request: Request) -> str | None:
        """The program whose pins a waiting call's prefix hit may include (kept)."""
        if request.status == RequestStatus.RUNNING:
            return None
        call = self._calls.get(request.request_id)
        return call.program_id if call is not None else None

    def _sort_key(self, request: Request) -> tuple:
        """The policy's order (``Policy.sort_key``), as the simulators use it."""
        call = self._calls.get(request.request_id)
        if call is None:  # not ours (cannot happen in vLLM 0.32.0): vLLM's own order
            return (request.priority, 0, request.arrival_time, -1)
        return self._policy.sort_key(call)

    # -- arrivals ----------------------------------------------------------------
    def add_request(self, request: Request) -> None:
        if request.request_id in self.requests or request.request_id in self._calls:
            super().add_request(request)  # a streaming-input continuation of an active call
            return
        tag = ProgramTag.from_extra_args(
            request.sampling_params.extra_args if request.sampling_params else None,
            request.request_id, session_id=getattr(request, "session_id", None),
        )
        if self._retention is not None:
            self._retention.end([p for p in tag.ended_programs if p != tag.program_id])
            self._retention.table.observe_return(tag.program_id, request.arrival_time)
            if self._retention.host is not None:
                self._retention.host.expect(request.request_id, tag.program_id)
        service, wait, program_arrival = self._inherited(tag, request)
        call = CallState(
            request.request_id, tag.program_id, tag.thread_id, request.arrival_time, self._seq,
            client_priority=request.priority, start_service=service, program_wait=wait,
            remaining_work=tag.remaining_work or 0.0, program_arrival=program_arrival,
        )
        self._seq += 1
        if tag.is_last_call or tag.program_id == request.request_id:
            self._last_calls.add(request.request_id)  # a one-off: nothing to retain for
        self._policy.admit(call)
        self._calls[request.request_id] = call
        self._waits.start(call)
        # Before vLLM queues it: the waiting heap orders by this key from the start.
        request.priority = self._policy.engine_priority(call)
        super().add_request(request)

    def _inherited(self, tag: ProgramTag, request: Request) -> tuple[float, float, float]:
        """(service, wait, program arrival) the call inherits: carried by the request,
        else from the local table."""
        if tag.program_service is not None:
            arrival = tag.program_arrival
            return (tag.program_service, tag.program_wait or 0.0,
                    request.arrival_time if arrival is None else arrival)
        if self._local_table.is_ended(tag.program_id):
            return 0.0, 0.0, request.arrival_time
        ticket = self._local_table.begin_call(tag.program_id, tag.thread_id,
                                              call_id=request.request_id,
                                              arrival=request.arrival_time)
        self._local_calls.add(request.request_id)
        return ticket.program_service, ticket.program_wait, ticket.program_arrival

    # -- one engine step ---------------------------------------------------------
    def schedule(self, throttle_prefills: bool = False):
        if self._decision_due():
            self._reorder()
            if self._policy.preemptive:
                self._preempt_for_waiting()
        output = super().schedule(throttle_prefills)
        for new in output.scheduled_new_reqs:
            self._on_admitted(new.req_id, new.num_computed_tokens)
        self._step_tokens = output.num_scheduled_tokens
        self._step_started = time.monotonic()
        return output

    def _on_admitted(self, req_id: str, hit_tokens: int) -> None:
        """A call's first scheduling: count what it reused, release its program's pins."""
        call, request = self._calls.get(req_id), self.requests.get(req_id)
        if call is None or request is None or request.num_preemptions:
            return  # a resumption (counted at its first admission)
        stats = call.stats
        before = self._history.get(call.program_id, 0)
        prompt = request.num_prompt_tokens
        stats.reprefilled_tokens = max(0, min(before, prompt) - hit_tokens)
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
        """Charge service to the calls the step ran and waiting to all the others
        (lazily, through the wait ledger: this step's cost is O(running calls))."""
        started = self._step_started if self._step_started is not None else now
        step_s = max(0.0, now - started)
        waited_s = max(0.0, now - self._last_step_end)
        self._last_step_end = now
        weight = self._policy_config.prefill_token_weight
        policy, waits, calls, requests = self._policy, self._waits, self._calls, self.requests
        tokens, last = self._step_tokens, self._last_tokens
        changed: list[CallState] = []
        for req_id in last.keys() - tokens.keys():  # no longer scheduled: waits
            call = calls.get(req_id)
            if call is not None:
                waits.start(call)
        for req_id in tokens.keys() - last.keys():  # scheduled again: stops waiting
            if waits.stop(req_id):
                changed.append(calls[req_id])
        tokens_unit = self._tokens_unit
        for req_id, n in tokens.items():
            call = calls.get(req_id)
            req = requests.get(req_id)
            if call is None or req is None:
                continue
            stats = call.stats
            stats.execution_s += step_s
            # vLLM advanced num_computed_tokens when it scheduled the step.
            if n == 1 and req.num_computed_tokens - 1 >= req.num_prompt_tokens:
                stats.decode_tokens += 1
                amount = 1.0
            else:
                stats.prefill_tokens += n
                stats.prefill_s += step_s
                amount = weight * n
            if policy.record_service(call, amount if tokens_unit else step_s):
                changed.append(call)
        changed += waits.tick(1.0 if self._tokens_unit else waited_s, waited_s)
        for call in changed:  # applied to request.priority at the next decision step
            self._level_changed[call.call_id] = call
        self._last_tokens = tokens
        self._step_tokens = {}
        self._step_started = None
        self._steps_since_gc += 1
        if self._steps_since_gc >= 1000:
            self._steps_since_gc = 0
            self._local_table.collect_stale()
            if self._retention is not None:
                self._retention.collect(time.time())

    # -- ordering and proactive preemption -----------------------------------------
    def _reorder(self) -> None:
        """Apply the changed calls' levels to ``request.priority`` and re-order."""
        if not self._level_changed:
            return
        for req_id, call in self._level_changed.items():
            req = self.requests.get(req_id)
            if req is not None:
                req.priority = self._policy.engine_priority(call)
        self._level_changed.clear()
        for queue in (self.waiting, self.kv_holding_waiting):
            if isinstance(queue, PolicyRequestQueue):
                queue.reorder()
        # vLLM hands out the token budget in running-list order: best first.
        self.running.sort(key=self._sort_key)

    def _preempt_for_waiting(self) -> None:
        """Evict running calls of a worse queue that block better waiting calls."""
        waiting = self.waiting
        if not isinstance(waiting, PolicyRequestQueue) or not waiting or not self.running:
            return
        worst_running = max(r.priority for r in self.running)
        if waiting.peek_request().priority >= worst_running:
            return
        cap = self._policy_config.max_preemptions_per_step
        slots = self.max_num_active_reqs - len(self.running)
        free_blocks = self.kv_cache_manager.block_pool.get_num_free_blocks()
        if self._retention is not None:  # retained blocks yield before any call does
            free_blocks += self._retention.releasable_blocks()
        victims = sorted(self.running, key=self._sort_key, reverse=True)
        chosen: list[Request] = []
        for cand in waiting.best(len(self.running) + max(slots, 0)):
            need = self._blocks_needed(cand)
            if slots > 0 and need <= free_blocks:
                slots -= 1
                free_blocks -= need
                continue
            if len(chosen) == len(victims) or (cap is not None and len(chosen) >= cap):
                break
            victim = victims[len(chosen)]
            if victim.priority <= cand.priority:
                break  # strict priority: never evict an equal or better call
            chosen.append(victim)
            free_blocks += self._blocks_held(victim) - need
        if not chosen:
            return
        now = time.monotonic()
        evicted = set(chosen)
        self.running = [r for r in self.running if r not in evicted]
        for victim in chosen:
            self._preempt_request(victim, now)
            # vLLM's own preemptions happen inside schedule(), after it reads this set;
            # ours come before, and a victim resumed in this very step must be sent to
            # the worker whole (vLLM sends all token ids of requests not in the set).
            self.prev_step_scheduled_req_ids.discard(victim.request_id)

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
        history = self._history
        history[call.program_id] = request.num_computed_tokens
        history.move_to_end(call.program_id)
        if len(history) > HISTORY_PROGRAMS:
            history.popitem(last=False)
        if self._retention is not None and call.call_id not in self._last_calls:
            # LangGraph threads are "node:task-id" (checkpoint namespaces): the node.
            self._retention.on_call_finished(request, call.program_id,
                                             self._policy.engine_priority(call), time.time(),
                                             call.thread_id.split(":", 1)[0])

    def reset_prefix_cache(self, *args: Any, **kwargs: Any) -> bool:
        if self._retention is not None:  # a reset needs every block free
            self._retention.release_all()
        return super().reset_prefix_cache(*args, **kwargs)

    def _find_swap_connector(self):
        """Our swap connector when vLLM built one (swap mode), else None."""
        if self.connector is None:
            return None
        from autellix_engine.swap.connector import AutellixSwapConnector  # only with swap mode

        return self.connector if isinstance(self.connector, AutellixSwapConnector) else None

    # -- completion --------------------------------------------------------------
    def _free_request(self, request: Request, delay_free_blocks: bool = False):
        call = self._calls.get(request.request_id)
        if call is not None and request.status != RequestStatus.FINISHED_ABORTED:
            self._remember_history(call, request)
        kv_params, ec_params = super()._free_request(request, delay_free_blocks)
        call = self._calls.pop(request.request_id, None)
        self._last_calls.discard(request.request_id)
        if call is None:
            return kv_params, ec_params
        self._waits.stop(request.request_id)
        stats = call.stats
        stats.preemptions = request.num_preemptions
        stats.level = call.level
        swap = self._swap
        if swap is not None:
            stats.swap = swap.pop_call_stats(request.request_id) or stats.swap
            stats.host_pool_used_blocks = swap.planner.pool.used
        if self._retention is not None:
            stats.retained_device_blocks = self._retention.table.pinned_blocks
            if swap is not None:
                stats.retained_host_blocks = swap.planner.retained_blocks
        if request.request_id in self._local_calls:
            self._local_calls.discard(request.request_id)
            if request.status == RequestStatus.FINISHED_ABORTED:
                self._local_table.abort_call(call.program_id, call.call_id)
            else:
                self._local_table.complete_call(call.program_id, call.call_id, stats)
        return {**(kv_params or {}), STATS_KEY: stats.to_dict()}, ec_params


class AutellixScheduler(_ProgramAwareMixin, Scheduler):
    """Program-aware scheduler for engines without async scheduling (the CPU build)."""


class AutellixAsyncScheduler(_ProgramAwareMixin, AsyncScheduler):
    """Program-aware scheduler for engines with async scheduling on (GPU default)."""


def scheduler_settings(policy: PolicyKind, config: PolicyConfig,
                       kv_retention: bool = False) -> dict[str, Any]:
    """The ``additional_config`` entry that configures the scheduler in the engine core."""
    return {CONFIG_KEY: {"policy": policy.value, "policy_config": config.to_dict(),
                         "kv_retention": kv_retention}}
