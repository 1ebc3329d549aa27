"""A discrete-event simulator of one vLLM V1 engine that runs the engine's policy code.

It replays ``workloads`` programs (stages of parallel calls, tool latency between
stages) on a model of the physics that make a GPU engine queue
(``autellix_workloads.sim.profile`` gives the costs, ``.kvcache`` the memory):

* **KV memory in blocks.** A call holds the blocks of its context; a waiting call is
  admitted only when its first chunk's blocks can be allocated; a decoding call needs a
  new block every ``block_size`` tokens, and when none is left the engine preempts its
  lowest-priority running call (vLLM: the last admitted under FCFS).
* **Prefix caching with LRU eviction.** A finished call leaves its context cached for the
  program's next call; a suite's system prompt is shared; freed prefixes are evicted
  least recently freed first. Off (``prefix_caching=False``), every call computes its
  whole prompt.
* **Chunked prefill.** Each step has a token budget (``max_num_batched_tokens``): one
  token per decoding call first, the rest in chunks to calls still computing prompts.
* **KV retention** (``kv_retention``, ``autellix_engine.extension.retention_pins``): a live
  program's prefix is held out of the LRU order between its calls and given up, worst
  priority first, only when an allocation finds nothing else to evict; in swap mode
  it is then copied to the host pool and its next call reloads it; an ended program's
  blocks are freed. The order is the engine's own ``RetentionTable``.
* **Preemption** by recomputation (blocks freed but cached; the resumed call recomputes
  what was evicted) or by swapping to a host pool at PCIe bandwidth (``preemption``);
  a preemptive policy evicts a running call for a better waiting one, as
  ``autellix_engine.extension.scheduler`` does.
* **Step time** from the profile: GEMMs by batch tokens, decode attention by total
  context, prefill attention, LM head, per-step CPU work, swap copies.

Service and waiting are charged as ``AutellixScheduler`` charges them, by the same
objects: ``ServiceCharger`` (tokens unit: decode tokens + weighted prefill tokens) and
the ``WaitLedger`` (one unit of waiting per step), to the same ``Policy`` and
``ProcessTable`` objects.

Speed: the engine's per-step work is per running call, but between events (an arrival,
a completion, a demotion, a promotion, a block that cannot be allocated, a prefill)
every decoding call just gains one token per step, so the simulator advances all of
them at once: decoding calls are charged lazily when something happens to them, step
times are summed in closed form (the context term grows linearly), and block demand is
counted per position within a block. ``max_jump`` caps that (1: step by step) for
checks; results do not depend on it.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from autellix_engine.core.calls import CallState
from autellix_engine.core.charging import ServiceCharger
from autellix_engine.core.config import PolicyConfig, ServiceUnit
from autellix_engine.core.decisions import may_evict, plan_evictions, victim_key
from autellix_engine.core.policies import Policy, create_policy
from autellix_engine.core.process_table import ProcessTable
from autellix_engine.core.retention import RetentionTable
from autellix_engine.core.stats import CallStats, Tally
from autellix_engine.core.waits import WaitLedger
from autellix_workloads.metrics import ProgramOutcome
from autellix_workloads.sim.kvcache import BlockPool, HostPool
from autellix_workloads.sim.profile import CostProfile
from autellix_workloads.spec import ProgramSpec

PREEMPTION_MODES = ("recompute", "swap")
_WAIT, _PREFILL, _DECODE, _DONE = range(4)
#: Events this close to a step's end count as reached: step times summed one by one
#: and in closed form round differently, and a tie must not depend on which was used.
_TIME_EPS = 1e-9


@dataclass
class SimConfig:
    """What to simulate; ``None`` limits come from the profile."""

    profile: CostProfile = field(default_factory=lambda: CostProfile.load("cpu-smollm2"))
    policy_config: PolicyConfig = field(default_factory=PolicyConfig)
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    num_gpu_blocks: int | None = None  # None: the profile's memory arithmetic
    num_host_blocks: int | None = None
    #: ``"swap"``: our engine's default where the swap extension is built (``make
    #: setup`` builds it); ``"recompute"``: stock vLLM V1.
    preemption: str = "swap"
    prefix_caching: bool = True
    kv_retention: bool = False  # needs prefix caching
    #: Chat-template tokens each call adds to its prompt. SmolLM2's template: 31 for a
    #: program's first one-message chat (default system prompt included), ~6 per later
    #: message; 16 is a per-call average for the suites' mix.
    prompt_overhead_tokens: int = 16
    max_jump: int | None = None  # most steps advanced at once (None: no cap)
    #: Keep each step's scheduled calls (``Simulator.step_log``) and each finished
    #: call's statistics (``Simulator.call_stats``): for comparing decisions with the
    #: engine's scheduler (the differential test).
    log_steps: bool = False
    #: What a chat's program is (``ProgramSpec.run_per_stage``): its thread, across
    #: its turns, or each turn (run) on its own, as LangGraph runs without a thread.
    program_scope: str = "thread"
    #: A call's context limit (vLLM's ``max_model_len``; None: half the KV pool, so one
    #: long conversation cannot need the whole cache).
    #: A conversation beyond it keeps its most recent turns, as an application trims
    #: its history (``trim_messages``): the window's start moves, so the prefix cache
    #: cannot serve it.
    max_model_len: int | None = None

    def __post_init__(self) -> None:
        if self.program_scope not in ("thread", "run"):
            raise ValueError("program_scope must be 'thread' or 'run'")
        if self.max_model_len is not None and self.max_model_len < 1:
            raise ValueError("max_model_len must be >= 1")
        if self.preemption not in PREEMPTION_MODES:
            raise ValueError(f"preemption must be one of {PREEMPTION_MODES}")
        if self.policy_config.service_unit is not ServiceUnit.TOKENS:
            raise ValueError("the simulator charges service in the tokens unit only")
        if self.max_jump is not None and self.max_jump < 1:
            raise ValueError("max_jump must be >= 1")
        if self.kv_retention and not self.prefix_caching:
            raise ValueError("kv_retention needs prefix_caching")


@dataclass
class SimStats:
    """Engine-wide counters of one run."""

    steps: int = 0
    preemptions: int = 0
    swapped_out_blocks: int = 0
    recomputed_tokens: int = 0  # prefill tokens computed again after preemption
    prefill_tokens: int = 0
    prefix_hit_tokens: int = 0
    reprefilled_tokens: int = 0  # a program's history computed again by its next call
    retained_hit_tokens: int = 0  # prompt tokens from retained KV (device or host)
    retained_out_blocks: int = 0  # retained blocks copied to the host pool
    evicted_blocks: int = 0
    peak_used_blocks: int = 0
    events: int = 0  # loop iterations (one or many steps each)


@dataclass(slots=True)
class _Program:
    spec: ProgramSpec
    stage: int = 0
    open_calls: int = 0
    history: int = 0  # conversation tokens so far (system prompt excluded)
    remaining_tokens: int = 0  # for the clairvoyant oracle
    #: Its id in the process table: the program's, or in run scope its turn's.
    table_id: str = ""
    tally: Tally = field(default_factory=Tally)  # of its turns ended (run scope)


@dataclass(slots=True, eq=False)
class _Call:
    state: CallState
    prog: _Program
    system: int  # shared system-prompt tokens at the head of its prompt
    prompt: int  # all prompt tokens (system + history + new)
    output: int
    sequential: bool  # its context is the program's next prompt prefix
    target: int = 0  # tokens to compute before sampling (prompt; all tokens on resume)
    computed: int = 0  # tokens whose KV is computed (while running or swapped)
    generated: int = 0
    cached: int = 0  # prompt tokens found cached when it was first admitted
    history: int = 0  # the program's history its prompt carries (trimmed or whole)
    held: int = 0  # own device blocks (the shared system blocks excluded)
    sys_blocks: int = 0  # full system-prompt blocks it shares (0: not sharing)
    swapped: int = 0  # blocks in the host pool
    phase: int = _WAIT
    order: int = 0  # admission order (FCFS evicts the last admitted)
    token: int = 0  # validity of its heap entries
    bucket: int = -1  # position-in-block class while decoding
    # A decoding call is charged lazily: its counters are as of step base_n, time base_t.
    base_n: int = 0
    base_t: float = 0.0


def simulate(programs: list[ProgramSpec], policy_name: str, cfg: SimConfig | None = None
             ) -> list[ProgramOutcome]:
    """Simulate ``programs`` under a policy; one outcome per program."""
    return Simulator(programs, policy_name, cfg).run()


class Simulator:
    """One run; ``stats`` holds the engine-wide counters after :meth:`run`."""

    def __init__(self, programs: list[ProgramSpec], policy_name: str,
                 cfg: SimConfig | None = None) -> None:
        cfg = cfg or SimConfig()
        prof = cfg.profile
        self.cfg, self.prof = cfg, prof
        self.policy: Policy = create_policy(policy_name, cfg.policy_config)
        self.table = ProcessTable(self.policy.updated_program_service, ttl_s=math.inf)
        self.waits = WaitLedger(self.policy)
        self.charger = ServiceCharger(self.policy, cfg.policy_config)
        # vLLM keeps one block of its pool as the null block, never handed out.
        self.pool = BlockPool((cfg.num_gpu_blocks or prof.num_gpu_blocks) - 1)
        self.host = HostPool(prof.num_host_blocks if cfg.num_host_blocks is None
                             else cfg.num_host_blocks)
        self.bs = prof.block_size
        self.max_seqs = cfg.max_num_seqs or prof.max_num_seqs
        self.budget = cfg.max_num_batched_tokens or prof.max_num_batched_tokens
        self.stats = SimStats()
        self.now, self.n, self.seq, self.orders = 0.0, 0, 0, 0
        self.events: list[tuple[float, int, _Program]] = []  # stage starts
        self.waiting: list[tuple[tuple, int, int, _Call]] = []  # (key, seq, token, call)
        # Worst running first: (negated rank, seq, token, call, rank).
        self.victims: list[tuple[tuple, int, int, _Call, tuple]] = []
        self.finishes: list[tuple[int, int, int, _Call]] = []  # (step, seq, token, call)
        self.demotions: list[tuple[int, int, int, _Call]] = []
        self.prefilling: list[_Call] = []
        self.decoding: dict[int, _Call] = {}
        self.buckets: list[set[_Call]] = [set() for _ in range(self.bs)]
        self.context = 0  # Σ KV tokens of the decoding calls, at step n
        self.n_waiting = 0
        self.swap_tokens = 0  # to copy in the next step
        self.outcomes: list[ProgramOutcome] = []
        self._on_program_done: Callable[[], None] | None = None
        self.step_log: list[dict[str, int]] = []  # with cfg.log_steps: call id -> tokens
        self.call_stats: dict[str, CallStats] = {}  # with cfg.log_steps
        self.calls: dict[str, _Call] = {}  # active, by call id
        self.retention = RetentionTable(math.inf) if cfg.kv_retention else None
        self.host_retained: dict[str, int] = {}  # program -> host blocks (oldest first)
        if self.retention is not None:
            self.pool.pick_retained = self._pick_retained
            self.pool.on_released = self._retained_released
        for spec in programs:
            self._push_event(_Program(spec, remaining_tokens=spec.output_tokens), spec.arrival_s)

    # -- programs ------------------------------------------------------------------
    def _push_event(self, prog: _Program, at: float) -> None:
        heapq.heappush(self.events, (at, self.seq, prog))
        self.seq += 1

    def _start_stage(self, prog: _Program, at: float) -> None:
        """The calls of ``prog``'s next stage arrive (at ``at``: its arrival, or its
        previous stage's end plus the tool's latency)."""
        spec = prog.spec
        stage = spec.stages[prog.stage]
        prog.table_id = spec.program_id
        if spec.run_per_stage and self.cfg.program_scope == "run":
            prog.table_id = f"{spec.program_id}/{prog.stage}"
        prog.open_calls = len(stage)
        sequential = len(stage) == 1
        for i, c in enumerate(stage):
            if self.retention is not None and not i:
                self.retention.observe_return(spec.program_id, self.now)
            thread = f"s{prog.stage}t{i}"
            # A call id of our own: unique per run, and no uuid4 per call (1.6 million
            # calls in 10,000 LATS programs).
            ticket = self.table.begin_call(prog.table_id, thread,
                                           call_id=f"{spec.program_id}/{thread}")
            state = CallState(ticket.call_id, prog.table_id, ticket.thread_id, at,
                              self.seq, ticket.program_service, ticket.program_wait,
                              remaining_work=prog.remaining_tokens,  # read by srpt only
                              program_arrival=spec.arrival_s)
            self.seq += 1
            self.policy.admit(state)
            fixed = spec.system_tokens + c.prompt_tokens + self.cfg.prompt_overhead_tokens
            history = self._history_window(prog, fixed + c.output_tokens)
            prompt = fixed + history
            call = _Call(state, prog, spec.system_tokens, prompt, c.output_tokens, sequential,
                         target=prompt, history=history)
            self.calls[state.call_id] = call
            self._enqueue(call)

    def _history_window(self, prog: _Program, rest: int) -> int:
        """The history a call of ``prog`` carries beside ``rest`` tokens: all of it, or
        its most recent part within the context limit (then the cached prefix is of
        no use: it is dropped)."""
        limit = self.pool.capacity * self.bs // 2
        if self.cfg.max_model_len is not None:
            limit = min(self.pool.capacity * self.bs, self.cfg.max_model_len)
        window = max(0, limit - rest)
        if prog.history <= window:
            return prog.history
        pid = prog.spec.program_id
        self.pool.drop(("prog", pid))
        if self.retention is not None:
            self.retention.pop(pid)
            self.retention.forget(pid)
            self.host.release(self.host_retained.pop(pid, 0))
        return window

    def _end_table_program(self, prog: _Program, *, finished: bool) -> None:
        """The engine's program ends (the end notice): its retained KV is released,
        the next to be evicted from the prefix cache (dropped if the program finished)."""
        pid = prog.spec.program_id  # KV is keyed by content: the whole chat's
        prog.tally.merge(self.table.end_program(prog.table_id).tally)
        if self.retention is not None:
            self.retention.pop(pid)
            self.retention.forget(pid)
            if finished:
                self.pool.drop(("prog", pid))
            else:  # as the engine's end notice: its blocks are the next evicted
                self.pool.unretain(("prog", pid), evict_first=True)
            self.host.release(self.host_retained.pop(pid, 0))

    def _finish_program(self, prog: _Program) -> None:
        s = prog.spec
        self._end_table_program(prog, finished=True)
        self.outcomes.append(ProgramOutcome(s.program_id, s.suite, s.arrival_s, self.now,
                                            prog.tally, s.idle_s))
        if self._on_program_done is not None:
            self._on_program_done()

    # -- KV retention ------------------------------------------------------------------
    def _pick_retained(self) -> tuple[str, str]:
        assert self.retention is not None
        while True:  # an entry whose call was just refused may hold nothing
            entry = self.retention.worst()
            assert entry is not None, "retained blocks without a retention entry"
            self.retention.pop(entry.program_id)
            key = ("prog", entry.program_id)
            if self.pool.retained_blocks(key):
                return key

    def _retained_released(self, key: tuple[str, str], blocks: int) -> None:
        """Pressure gave up a retained prefix: swap mode copies it to the host pool."""
        pid = key[1]
        if self.cfg.preemption != "swap":
            return
        self.host.release(self.host_retained.pop(pid, 0))
        if self.host.reserve(blocks):
            self.host_retained[pid] = blocks
            self.swap_tokens += blocks * self.bs
            self.stats.retained_out_blocks += blocks

    def _host_reserve(self, n: int) -> bool:
        """Host room for a preemption: retained copies give way, oldest first."""
        while not self.host.reserve(n):
            if not self.host_retained:
                return False
            pid = next(iter(self.host_retained))
            self.host.release(self.host_retained.pop(pid))
        return True

    # -- queues ----------------------------------------------------------------------
    def _enqueue(self, c: _Call) -> None:
        c.phase = _WAIT
        c.token += 1
        self.n_waiting += 1
        self.waits.start(c.state)
        self._push_waiting(c)

    def _push_waiting(self, c: _Call) -> None:
        heapq.heappush(self.waiting, (self.policy.sort_key(c.state), c.state.seq, c.token, c))
        if len(self.waiting) > 2 * self.n_waiting + 1024:
            # Stale entries (calls admitted or promoted since) leave the heap only when
            # they reach its top; in a long overload (MLFQ, 10,000 programs) they grew
            # it to 60x the waiting calls. Valid entries keep their (total) order.
            self.waiting = [e for e in self.waiting if e[3].phase == _WAIT and e[3].token == e[2]]
            heapq.heapify(self.waiting)

    def _best_waiting(self) -> _Call | None:
        while self.waiting:
            _, _, token, c = self.waiting[0]
            if c.phase == _WAIT and c.token == token:
                return c
            heapq.heappop(self.waiting)
        return None

    def _victim_rank(self, c: _Call) -> tuple:
        """Larger is evicted first: ``decisions.victim_key`` (the engine's order, for
        memory and rate alike), or (FCFS, as vLLM) the last admitted."""
        if self.policy.preemptive:
            return victim_key(self.policy.engine_priority(c.state), c.state.arrival,
                              c.state.seq)
        return (c.order,)

    def _push_running(self, c: _Call) -> None:
        c.token += 1
        rank = self._victim_rank(c)
        heapq.heappush(self.victims, (tuple([-x for x in rank]), c.state.seq, c.token, c, rank))

    def _worst_running(self) -> _Call | None:
        while self.victims:
            _, _, token, c, _ = self.victims[0]
            if c.phase in (_PREFILL, _DECODE) and c.token == token:
                return c
            heapq.heappop(self.victims)
        return None

    @property
    def _running(self) -> int:
        return len(self.prefilling) + len(self.decoding)

    # -- the loop ----------------------------------------------------------------------
    def run(self, on_program_done: Callable[[], None] | None = None) -> list[ProgramOutcome]:
        """Simulate every program to its end; ``on_program_done`` is called as each
        ends (progress)."""
        self._on_program_done = on_program_done
        while self.events or self._running or self.n_waiting:
            while self.events and self.events[0][0] <= self.now + _TIME_EPS:
                at, _, prog = heapq.heappop(self.events)
                self._start_stage(prog, at)
            if not (self._running or self.n_waiting):
                self.now = self.events[0][0]
                continue
            self.stats.events += 1
            self._iterate()
        self.stats.evicted_blocks = self.pool.evicted
        return self.outcomes

    def _iterate(self) -> None:
        if self.policy.preemptive:
            self._preempt_for_waiting()
        need = len(self.buckets[-self.n % self.bs]) if self.decoding else 0
        if need > self.pool.available:
            self._allocate_decode_blocks_one_by_one()
            # Those still decoding got their block for this step: a jump must not
            # allocate it again (it did, and leaked a block per call each time).
            vllm_preempted, need = True, len(self.buckets[-self.n % self.bs])
        else:
            self.pool.allocate(need)
            vllm_preempted = False
        chunks: list[tuple[_Call, int]] = []
        left = self.budget - len(self.decoding)
        vllm_preempted |= self._schedule_prefills(chunks, left)
        left -= sum(n for _, n in chunks)
        if not vllm_preempted:
            self._admit(chunks, left)
        if chunks or self.swap_tokens:
            self._step(chunks)
        elif self.decoding:
            self._jump(need)
        else:
            self._idle()

    def _idle(self) -> None:
        """Nothing runs and nothing could start: time passes to the next event. With no
        event left, the waiting calls can never fit in the KV cache."""
        if not self.events:
            raise RuntimeError("simulation stalled: waiting calls that can never run "
                               f"({self.n_waiting} waiting, {self.pool})")
        self.now = max(self.now, self.events[0][0])

    # -- scheduling ------------------------------------------------------------------------
    def _preempt_for_waiting(self) -> None:
        """Evict running calls of a worse queue that block better waiting calls, by
        the scheduler's rule (``autellix_engine.core.decisions.plan_evictions``)."""
        if not self._blocked_by_worse():
            return
        slots = self.max_seqs - self._running
        taken = [heapq.heappop(self.waiting) for _ in range(self._running + max(slots, 0))
                 if self._best_waiting() is not None]
        for entry in taken:
            heapq.heappush(self.waiting, entry)
        ranked = []  # the worst running calls' heap entries, worst first
        while len(ranked) < len(taken) and self._worst_running() is not None:
            ranked.append(heapq.heappop(self.victims))
        for entry in ranked:
            heapq.heappush(self.victims, entry)
        victims = [entry[3] for entry in ranked]
        policy = self.policy
        n = plan_evictions(
            ((policy.engine_priority(e[3].state), -(-e[3].target // self.bs)) for e in taken),
            [(policy.engine_priority(v.state), v.held) for v in victims],
            slots, self.pool.available, self.cfg.policy_config.max_preemptions_per_step)
        for v in victims[:n]:
            self._preempt(v)

    def _blocked_by_worse(self) -> bool:
        """Whether the best waiting call may evict the worst running one."""
        best, worst = self._best_waiting(), self._worst_running()
        if best is None or worst is None:  # nothing waits (most iterations)
            return False
        return may_evict(self.policy.engine_priority(worst.state),
                         self.policy.engine_priority(best.state))

    def _allocate_decode_blocks_one_by_one(self) -> None:
        """This step's decoding calls that start a new block, best first; when none is
        left, evict the lowest-priority running call (vLLM's own preemption)."""
        needy = sorted(self.buckets[-self.n % self.bs], key=self._victim_rank)
        for c in needy:
            while c.phase == _DECODE and not self.pool.allocate(1):
                self._preempt(self._worst_running())

    def _schedule_prefills(self, chunks: list[tuple[_Call, int]], left: int) -> bool:
        """Chunks for running calls still computing their prompt; True if a block
        shortage made the engine preempt."""
        preempted = False
        for c in sorted(self.prefilling, key=self._victim_rank):
            if left <= 0:
                break
            if c.phase != _PREFILL:
                continue  # preempted below, for a better call
            n = min(c.target - c.computed, left)
            while c.phase == _PREFILL and not self.pool.allocate(self._blocks_for(c, n)):
                self._preempt(self._worst_running())
                preempted = True
            if c.phase == _PREFILL:
                c.held += self._blocks_for(c, n)
                chunks.append((c, n))
                left -= n
        return preempted

    def _blocks_for(self, c: _Call, n: int) -> int:
        """New own blocks for computing ``n`` more tokens of ``c``."""
        return self._own_blocks(c, c.computed + n) - c.held

    def _own_blocks(self, c: _Call, tokens: int) -> int:
        return max(0, -(-tokens // self.bs) - c.sys_blocks)

    def _admit(self, chunks: list[tuple[_Call, int]], left: int) -> None:
        """Admit waiting calls in the policy's order while slots, budget and blocks
        last (vLLM stops at the first that does not fit)."""
        while left > 0 and self._running < self.max_seqs:
            c = self._best_waiting()
            if c is None or not self._start_running(c, left, chunks):
                return
            left -= chunks[-1][1] if chunks and chunks[-1][0] is c else 0

    def _start_running(self, c: _Call, left: int, chunks: list[tuple[_Call, int]]) -> bool:
        """Admit ``c`` if its blocks can be had: swapped back in whole, or its cached
        prefix hit and its first chunk allocated. False (nothing changed) if not."""
        if c.swapped:
            return self._swap_in(c)
        pool, caching, bs = self.pool, self.cfg.prefix_caching, self.bs
        hit_tokens = 0
        sys_key = ("sys", c.prog.spec.suite)
        if caching and c.system >= bs:
            sys_hit, ok = pool.acquire_shared(sys_key, c.system // bs)
            if not ok:
                return False
            c.sys_blocks = c.system // bs
            hit_tokens = sys_hit * bs
        call_key = ("call", c.state.call_id)
        pid = c.prog.spec.program_id
        key = call_key if c.state.stats.preemptions else ("prog", pid)
        own_hit = reload = 0
        retained = pool.retained_blocks(key) > 0
        chained = caching and (hit_tokens or not c.sys_blocks)  # prefixes chain from 0
        if chained:
            most = max(0, (c.target - 1) // bs - c.sys_blocks)
            own_hit = pool.hit(key, most)
            if key is not call_key:
                reload = max(0, min(self.host_retained.get(pid, 0), most) - own_hit)
        c.held, c.computed = own_hit + reload, hit_tokens + (own_hit + reload) * bs
        n = min(c.target - c.computed, left)
        new = self._blocks_for(c, n)
        if not pool.allocate(new + reload):
            pool.release(own_hit, key, own_hit, retain=retained)
            if c.sys_blocks:
                pool.release_shared(sys_key)
            c.held = c.sys_blocks = c.computed = 0
            return False
        if key is call_key:
            pool.drop(key)  # what its resumption could not use
        else:
            self._admitted(c, own_hit if retained else 0, reload)
        c.held += new
        self.stats.prefix_hit_tokens += c.computed
        if not c.state.stats.preemptions:
            c.cached = c.computed
        self._leave_waiting(c)
        self._to_prefill(c)
        chunks.append((c, n))
        return True

    def _admitted(self, c: _Call, retained_hit: int, reload: int) -> None:
        """A program's call starts: what of its history it reused, recomputes, reloads."""
        pid = c.prog.spec.program_id
        if c.history and c.prog.table_id == pid:  # a run-scoped turn has no history
            again = max(0, c.system + c.history - c.computed)
            c.state.stats.reprefilled_tokens += again
            self.stats.reprefilled_tokens += again
        if self.retention is None:
            return
        self.retention.pop(pid)  # as the engine releases a program's pins on admission
        self.pool.unretain(("prog", pid))  # what the call did not hit (not chained)
        host = self.host_retained.pop(pid, 0)
        self.host.release(host)
        if reload:
            self.swap_tokens += reload * self.bs
        c.state.stats.retained_tokens += (retained_hit + reload) * self.bs
        self.stats.retained_hit_tokens += (retained_hit + reload) * self.bs

    def _swap_in(self, c: _Call) -> bool:
        """Its KV comes back from the host pool whole (plus this step's new block)."""
        extra = int(c.computed >= c.target and c.computed % self.bs == 0)
        if not self.pool.allocate(c.swapped + extra):
            return False
        self.host.release(c.swapped)
        self.swap_tokens += c.swapped * self.bs
        c.held, c.swapped = c.swapped + extra, 0
        self._leave_waiting(c)
        if c.computed >= c.target:
            self._start_decoding(c)
        else:
            self._to_prefill(c)
        return True

    def _leave_waiting(self, c: _Call) -> None:
        self.n_waiting -= 1
        self.waits.stop(c.state.call_id)
        c.order = self.orders
        self.orders += 1

    def _to_prefill(self, c: _Call) -> None:
        c.phase = _PREFILL
        self.prefilling.append(c)
        self._push_running(c)

    # -- running calls ------------------------------------------------------------------
    def _start_decoding(self, c: _Call, rerank: bool = True) -> None:
        """``c`` has its whole context in KV and one more token to compute per step.
        ``rerank=False``: its running-heap entry from prefill still holds its rank (one
        push and one stale pop fewer per call)."""
        c.phase = _DECODE
        c.base_n, c.base_t = self.n, self.now
        self.decoding[id(c)] = c
        c.bucket = (c.computed - self.n) % self.bs  # needs a block at steps n = -bucket
        self.buckets[c.bucket].add(c)
        self.context += c.computed
        if rerank:
            self._push_running(c)
        self._push_finish_and_demotion(c)

    def _push_demotion(self, c: _Call, finish_at: int) -> None:
        left = c.state.quantum_left
        if self.policy.demotes and math.isfinite(left):
            at = c.base_n + max(1, math.ceil(left - 1e-9))
            if at < finish_at:  # else it ends first (completions go before demotions)
                heapq.heappush(self.demotions, (at, c.state.seq, c.token, c))

    def _settle(self, c: _Call) -> bool:
        """Charge a decoding call's lazy steps up to now; True if its queue changed."""
        steps = self.n - c.base_n
        if not steps:
            return False
        c.generated += steps
        c.computed += steps
        c.prog.remaining_tokens -= steps
        seconds = self.now - c.base_t
        c.base_n, c.base_t = self.n, self.now
        return self.charger.charge(c.state, 1, True, seconds, steps=steps)

    def _stop_decoding(self, c: _Call) -> None:
        self._settle(c)
        del self.decoding[id(c)]
        self.buckets[c.bucket].discard(c)
        self.context -= c.computed
        c.held = self._own_blocks(c, c.computed)

    def _preempt(self, c: _Call) -> None:
        """Evict a running call: swap its KV to the host pool, or free it (cached) to be
        recomputed on resumption."""
        if c.phase == _DECODE:
            self._stop_decoding(c)
        else:
            self.prefilling.remove(c)
        self.stats.preemptions += 1
        c.state.stats.preemptions += 1
        pool = self.pool
        if self.cfg.preemption == "swap" and c.held and self._host_reserve(c.held):
            c.state.stats.swap.swaps_out += 1
            c.state.stats.swap.swapped_blocks += c.held
            self.stats.swapped_out_blocks += c.held
            self.swap_tokens += c.held * self.bs
            pool.release(c.held)
            c.swapped, c.held = c.held, 0
        else:
            keep = c.computed // self.bs - c.sys_blocks if self.cfg.prefix_caching else 0
            pool.release(c.held, ("call", c.state.call_id), max(0, keep))
            c.held = 0
            c.target = c.prompt + c.generated  # recomputed, then it samples the next
            c.computed = 0
        if c.sys_blocks and not c.swapped:
            pool.release_shared(("sys", c.prog.spec.suite))
            c.sys_blocks = 0
        self._enqueue(c)

    # -- time --------------------------------------------------------------------------
    def _step(self, chunks: list[tuple[_Call, int]]) -> None:
        """One engine step with prefill chunks (or swaps): charged call by call."""
        prof = self.prof
        decodes = len(self.decoding)
        prefill = sum(n for _, n in chunks)
        finishing = sum(1 for c, n in chunks if c.computed + n >= c.target)
        c2 = sum(n * n for _, n in chunks)
        cp = sum(n * c.computed for c, n in chunks)
        ms = prof.step_ms(prefill, decodes, self.context, c2, cp, decodes + finishing,
                          len(chunks), self.swap_tokens)
        self.swap_tokens = 0
        dt = ms / 1000.0
        if self.cfg.log_steps:
            self.step_log.append({**{d.state.call_id: 1 for d in self.decoding.values()},
                                  **{c.state.call_id: n for c, n in chunks}})
        self._advance(1, dt)
        changed, finished = [], []
        for c, n in chunks:
            # As the scheduler counts: one token past the prompt is a decode (a resumed
            # call whose cached prefix covers all but its last token).
            decoding = n == 1 and c.computed >= c.prompt
            if not decoding:
                self.stats.prefill_tokens += n
                if c.generated:
                    self.stats.recomputed_tokens += n
            c.computed += n
            level_changed = self.charger.charge(c.state, n, decoding, dt)
            if level_changed:
                changed.append(c)
            if c.computed >= c.target:  # the last chunk samples a token
                self.prefilling.remove(c)
                c.generated += 1
                c.prog.remaining_tokens -= 1
                if c.generated >= c.output:
                    c.phase = _DONE
                    finished.append(c)
                    continue
                self._start_decoding(c, rerank=level_changed)
        for c in changed:
            if c.phase == _PREFILL:
                self._push_running(c)
        self._after_steps(finished)

    def _jump(self, allocated: int) -> None:
        """Advance every decoding call by as many steps as nothing else happens
        (``allocated``: blocks the first of them already got)."""
        B, d = len(self.decoding), self.prof.decode_attention_ms_per_context_token
        fixed = self.prof.step_ms(0, B, 0)  # one decode step's ms without the context
        k = self._steps_until_event(allocated, fixed)
        ms = k * (fixed + d * self.context) + d * B * k * (k - 1) / 2
        self.pool.allocate(self._blocks_needed(k) - allocated)
        if self.cfg.log_steps:
            self.step_log += [{d.state.call_id: 1 for d in self.decoding.values()}] * k
        self._advance(k, ms / 1000.0)
        self._after_steps()

    def _advance(self, k: int, dt: float) -> None:
        self.n += k
        self.now += dt
        self.context += len(self.decoding) * k
        self.stats.steps += k
        self.stats.peak_used_blocks = max(self.stats.peak_used_blocks, self.pool.used)
        for state in self.waits.tick(float(k), dt):  # anti-starvation promotions
            c = self.calls[state.call_id]
            c.token += 1
            self._push_waiting(c)

    def _steps_until_event(self, allocated: int, fixed_ms: float) -> int:
        """Steps of pure decoding before anything but a token per call happens."""
        n, k = self.n, self.cfg.max_jump or 1 << 40
        for heap in (self.finishes, self.demotions):
            while heap and heap[0][2] != heap[0][3].token:
                heapq.heappop(heap)  # stale
            if heap:
                k = min(k, heap[0][0] - n)
        if self.policy.preemptive and self._blocked_by_worse():
            return 1  # the next step's decision evicts again (as the scheduler does)
        promotion = self.waits.steps_to_next_promotion()
        if self.policy.preemptive and math.isfinite(promotion):
            k = min(k, math.ceil(promotion))
        if self.events:
            k = min(k, self._steps_until(self.events[0][0], fixed_ms))
        return max(1, self._steps_fitting_memory(allocated, k))

    def _steps_until(self, t: float, fixed_ms: float) -> int:
        """Decode steps until the one that ends at or after time ``t`` (the inverse of
        ``_jump``'s closed-form sum of step times)."""
        gap = (t - self.now - _TIME_EPS) * 1000.0
        B, d = len(self.decoding), self.prof.decode_attention_ms_per_context_token
        a = fixed_ms + d * self.context  # the next step's ms
        if gap <= a:
            return 1
        g = d * B / 2  # ms(k) = g k^2 + (a - g) k
        if g <= 0:
            return math.ceil(gap / a)
        b = a - g
        return max(1, math.ceil((-b + math.sqrt(b * b + 4 * g * gap)) / (2 * g) - 1e-9))

    def _blocks_needed(self, k: int) -> int:
        """New blocks the decoding calls need over the next ``k`` steps."""
        bs, B = self.bs, len(self.decoding)
        full, part = divmod(k, bs)
        return full * B + sum(len(self.buckets[-(self.n + j) % bs]) for j in range(part))

    def _steps_fitting_memory(self, allocated: int, limit: int) -> int:
        """Most steps, up to ``limit``, whose new blocks the pool can provide, counting
        the ``allocated`` blocks this step already got (0: not even this one)."""
        bs, B = self.bs, len(self.decoding)
        avail = self.pool.available + allocated
        if not B:
            return limit
        cycles = max(0, avail // B - 1)  # each cycle of ``bs`` steps takes B blocks
        k, need = cycles * bs, cycles * B
        if k >= limit:  # memory is not what ends this jump
            return limit
        while k < limit:
            need += len(self.buckets[-(self.n + k) % bs])
            if need > avail:
                return k
            k += 1
        return limit

    def _after_steps(self, finished: list[_Call] | None = None) -> None:
        """Completions and demotions due at the current step. Completions go in
        arrival order, so the stages they start keep the programs' order."""
        n, finished = self.n, finished or []
        while self.finishes and self.finishes[0][0] <= n:
            _, _, token, c = heapq.heappop(self.finishes)
            if c.token == token and c.phase == _DECODE:
                self._stop_decoding(c)
                finished.append(c)
        for c in sorted(finished, key=lambda c: c.state.seq):
            self._complete(c)
        while self.demotions and self.demotions[0][0] <= n:
            _, _, token, c = heapq.heappop(self.demotions)
            if c.token == token and c.phase == _DECODE:
                self._settle(c)
                self._push_running(c)  # a new key (and token)
                self._push_finish_and_demotion(c)

    def _push_finish_and_demotion(self, c: _Call) -> None:
        finish_at = c.base_n + c.output - c.generated
        heapq.heappush(self.finishes, (finish_at, c.state.seq, c.token, c))
        self._push_demotion(c, finish_at)

    def _complete(self, c: _Call) -> None:
        """A call produced its last token: free (and cache) its blocks, and move its
        program on."""
        c.phase = _DONE
        c.token += 1
        del self.calls[c.state.call_id]
        c.state.stats.level = c.state.level  # its queue at completion, as the engine's
        if self.cfg.log_steps:
            self.call_stats[c.state.call_id] = c.state.stats
        pool, prog = self.pool, c.prog
        pid = prog.spec.program_id
        if self.cfg.prefix_caching and c.sequential:
            keep = min(max(0, c.computed // self.bs - c.sys_blocks), c.held)
            retain = self.retention is not None and keep > 0
            pool.release(c.held, ("prog", pid), keep, retain=retain)
            if retain:
                self.retention.retain(pid, [], self.policy.engine_priority(c.state),
                                      self.now)
        else:
            pool.release(c.held)
        c.held = 0
        if c.sys_blocks:
            pool.release_shared(("sys", prog.spec.suite))
        if c.sequential:
            prog.history = c.prompt - c.system + c.output
        self.table.complete_call(prog.table_id, c.state.call_id, c.state.stats,
                                 prompt_tokens=c.prompt, cached_tokens=c.cached,
                                 completion_tokens=c.output)
        prog.open_calls -= 1
        if prog.open_calls:
            return
        prog.stage += 1
        if prog.stage < len(prog.spec.stages):
            if prog.table_id != pid:  # run scope: the turn's program ends with its run
                self._end_table_program(prog, finished=False)
            self._push_event(prog, self.now + prog.spec.gap_before(prog.stage))
        else:
            self._finish_program(prog)
