"""A discrete-event simulator of continuous batching that runs the engine's policy code.

It replays ``workloads`` programs (stages of parallel calls, tool latency between
stages) on a model of one vLLM engine:

* each step, up to ``max_num_seqs`` calls run; preemptive policies rebuild the batch in
  strict priority order (the order ``autellix_engine.scheduler`` obtains by preempting), FCFS
  keeps running calls and admits waiting ones in arrival order;
* a newly admitted call first computes its prompt (one prefill step); a preempted call
  recomputes its prompt and the tokens it had generated when it resumes (vLLM V1
  preempts by recomputation);
* the step costs ``StepCost``: ``base + per_decode * decode calls + per_prefill * prefill
  tokens``, fitted to the real engine (``benchmarks/fit_step_cost.py``);
* service and waiting are charged exactly as ``AutellixScheduler`` charges them (tokens
  unit: decode + weighted prefill; one unit of waiting per step), through the same
  ``Policy`` and ``ProcessTable`` objects.

Speed: when nothing changes (no arrival, completion, admission or demotion), several
identical steps are taken at once (at most ``max_jump``). Anti-starvation promotions are
then checked at the end of the jump, so they can come up to ``max_jump`` steps late.
Prefix caching is modelled as perfect: a call's prefill is only its new prompt tokens.
"""

from __future__ import annotations

import heapq
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from autellix_engine.policy.calls import CallState
from autellix_engine.policy.config import PolicyConfig
from autellix_engine.policy.policies import Policy, create_policy
from autellix_engine.policy.process_table import ProcessTable
from autellix_workloads.metrics import ProgramOutcome
from autellix_workloads.spec import ProgramSpec


@dataclass(frozen=True, slots=True)
class StepCost:
    """Seconds per engine step: base + per_decode * decodes + per_prefill * prefill tokens."""

    base: float
    per_decode: float
    per_prefill: float

    def __call__(self, decodes: int, prefill_tokens: int) -> float:
        return self.base + self.per_decode * decodes + self.per_prefill * prefill_tokens

    @classmethod
    def load(cls, path: Path) -> StepCost:
        data = json.loads(Path(path).read_text())
        return cls(data["base"], data["per_decode"], data["per_prefill"])


@dataclass(slots=True)
class _Call:
    state: CallState
    program: _Program
    prompt: int
    output: int
    generated: int = 0
    prefilled: bool = False
    running: bool = False


@dataclass(slots=True)
class _Program:
    spec: ProgramSpec
    stage: int = 0
    open_calls: int = 0
    tokens: int = 0
    queue_wait_s: float = 0.0
    execution_s: float = 0.0
    preemptions: int = 0
    remaining_tokens: int = 0  # for the clairvoyant oracle


@dataclass
class SimConfig:
    max_num_seqs: int = 8
    cost: StepCost = field(default_factory=lambda: StepCost(0.03, 0.002, 0.0003))
    policy_config: PolicyConfig = field(default_factory=PolicyConfig)
    max_jump: int = 32
    recompute_on_preempt: bool = True  # False: resume without a prefill step (toy checks)
    #: On resume after preemption, vLLM recomputes only what the prefix cache lost. With
    #: a KV cache far larger than the batch (the default engine's), a preempted call's
    #: full blocks stay cached: only its last, partial block (``block_size``) is
    #: recomputed. Set ``cached_resume=False`` to charge the whole context instead.
    cached_resume: bool = True
    block_size: int = 16
    #: Chat-template tokens each call adds to its prefill. SmolLM2's template: 31 for a
    #: program's first one-message chat (default system prompt included), ~6 per later
    #: message; 16 is a per-call average for the suites' mix.
    prompt_overhead_tokens: int = 16


def simulate(programs: list[ProgramSpec], policy_name: str, cfg: SimConfig | None = None
             ) -> list[ProgramOutcome]:
    """Simulate ``programs`` under a policy; one outcome per program."""
    return _Sim(programs, create_policy(policy_name, (cfg or SimConfig()).policy_config),
                cfg or SimConfig()).run()


class _Sim:
    def __init__(self, programs: list[ProgramSpec], policy: Policy, cfg: SimConfig) -> None:
        self.policy, self.cfg = policy, cfg
        self.table = ProcessTable(policy.updated_program_service, ttl_s=math.inf)
        self.now = 0.0
        self.seq = 0
        self.events: list[tuple[float, int, _Program]] = []  # (time, seq, program) stage starts
        self.active: list[_Call] = []
        self.outcomes: list[ProgramOutcome] = []
        for spec in programs:
            prog = _Program(spec, remaining_tokens=spec.output_tokens)
            self._schedule_stage(prog, spec.arrival_s)

    def _schedule_stage(self, prog: _Program, at: float) -> None:
        heapq.heappush(self.events, (at, self.seq, prog))
        self.seq += 1

    def _start_stage(self, prog: _Program) -> None:
        stage = prog.spec.stages[prog.stage]
        prog.open_calls = len(stage)
        for i, c in enumerate(stage):
            ticket = self.table.begin_call(prog.spec.program_id, f"s{prog.stage}t{i}")
            state = CallState(ticket.call_id, prog.spec.program_id, ticket.thread_id, self.now,
                              self.seq, ticket.program_service, ticket.program_wait,
                              remaining_work=prog.remaining_tokens)  # read by srpt only
            self.seq += 1
            self.policy.admit(state)
            prompt = c.prompt_tokens + (prog.spec.system_tokens if prog.stage == 0 else 0)
            prompt += self.cfg.prompt_overhead_tokens
            self.active.append(_Call(state, prog, prompt, c.output_tokens))

    def run(self) -> list[ProgramOutcome]:
        while self.events or self.active:
            while self.events and self.events[0][0] <= self.now:
                _, _, prog = heapq.heappop(self.events)
                self._start_stage(prog)
            if not self.active:
                self.now = self.events[0][0]
                continue
            self._step()
        return self.outcomes

    def _batch(self) -> list[_Call]:
        key = lambda c: self.policy.sort_key(c.state)  # noqa: E731
        limit = self.cfg.max_num_seqs
        if self.policy.preemptive:
            return sorted(self.active, key=key)[:limit]
        kept = [c for c in self.active if c.running]
        waiting = sorted((c for c in self.active if not c.running), key=key)
        return kept + waiting[: limit - len(kept)]

    def _step(self) -> None:
        batch = self._batch()
        chosen = set(map(id, batch))
        for c in self.active:
            if c.running and id(c) not in chosen:  # preempted: KV dropped, recompute later
                c.running = False
                c.prefilled = not self.cfg.recompute_on_preempt
                c.program.preemptions += 1
            c.running = id(c) in chosen
        prefill = [c for c in batch if not c.prefilled]
        decode = [c for c in batch if c.prefilled]
        waiting = [c for c in self.active if not c.running]
        if prefill:
            self._advance(1, prefill, decode, waiting)
        else:
            self._advance(self._jump(decode), [], decode, waiting)

    def _jump(self, decode: list[_Call]) -> int:
        k = self.cfg.max_jump
        for c in decode:
            k = min(k, c.output - c.generated)
            if math.isfinite(c.state.quantum_left):  # stop where it would demote
                k = min(k, max(1, math.ceil(c.state.quantum_left)))
        if self.events:
            step = self.cfg.cost(len(decode), 0)
            k = min(k, max(1, math.ceil((self.events[0][0] - self.now) / step)))
        return max(1, k)

    def _advance(self, k: int, prefill: list[_Call], decode: list[_Call],
                 waiting: list[_Call]) -> None:
        tokens = sum(self._prefill_tokens(c) for c in prefill)
        dt = k * self.cfg.cost(len(decode), tokens)
        self.now += dt
        weight = self.cfg.policy_config.prefill_token_weight
        for c in prefill:
            c.prefilled = True
            c.program.execution_s += dt
            self.policy.record_service(c.state, weight * self._prefill_tokens(c))
            if c.generated == 0:  # the prefill step samples the first token
                self._emit(c, 1)
        for c in decode:
            c.program.execution_s += dt
            self.policy.record_service(c.state, float(k))
            self._emit(c, k)
        for c in waiting:
            c.program.queue_wait_s += dt
        self.policy.record_waits([c.state for c in waiting], float(k))
        # In admission order, so same-time arrivals keep program order (tie-breaking).
        for c in [c for c in self.active if c.generated >= c.output]:
            self._complete(c)

    def _prefill_tokens(self, c: _Call) -> int:
        if c.generated == 0:
            return c.prompt
        context = c.prompt + c.generated
        return context % self.cfg.block_size if self.cfg.cached_resume else context

    def _emit(self, c: _Call, n: int) -> None:
        c.generated += n
        c.program.tokens += n
        c.program.remaining_tokens -= n

    def _complete(self, c: _Call) -> None:
        self.active.remove(c)
        prog = c.program
        self.table.complete_call(prog.spec.program_id, c.state.call_id, c.state.stats)
        prog.open_calls -= 1
        if prog.open_calls:
            return
        prog.stage += 1
        if prog.stage < len(prog.spec.stages):
            self._schedule_stage(prog, self.now + prog.spec.tool_latency_s)
            return
        self.table.end_program(prog.spec.program_id)
        s = prog.spec
        self.outcomes.append(ProgramOutcome(
            s.program_id, s.suite, s.arrival_s, self.now, prog.tokens, s.num_calls,
            prog.queue_wait_s, prog.execution_s, prog.preemptions))
