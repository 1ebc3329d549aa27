"""An engine's active calls and what each step charges them (pure).

``ServiceCharger`` is the one rule for what running costs a call (its statistics and
its service, ``decisions.step_service``), used by the scheduler after each step and by
the simulator, which charges a decoding call several steps at once.

``CallBook`` is the scheduler's bookkeeping, apart from vLLM: it admits calls (their
``CallState`` and queue), and after each engine step charges service to the calls the
step ran and waiting to every other active call, lazily through the ``WaitLedger`` (a
step costs O(calls that start or stop waiting), not O(all waiting calls)). Calls whose
queue changed are kept until the scheduler applies them at its next decision step.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from autellix_engine.core.calls import CallState
from autellix_engine.core.config import PolicyConfig, ServiceUnit
from autellix_engine.core.decisions import step_service
from autellix_engine.core.policies import Policy
from autellix_engine.core.waits import WaitLedger


class ServiceCharger:
    """Charges a call for running: its statistics, and its service to ``policy`` (in
    the configured unit: tokens, prompt tokens weighted, or seconds)."""

    def __init__(self, policy: Policy, config: PolicyConfig) -> None:
        self.policy = policy
        self._tokens_unit = config.service_unit is ServiceUnit.TOKENS
        self._weight = config.prefill_token_weight

    def charge(self, call: CallState, tokens: int, decoding: bool, seconds: float,
               steps: int = 1) -> bool:
        """``steps`` engine steps of ``call``, ``seconds`` in all: decoding a token in
        each, or (one step) computing ``tokens`` prompt tokens. Whether its queue
        changed."""
        stats = call.stats
        stats.execution_s += seconds
        if decoding:
            stats.decode_tokens += steps
            service = steps * step_service(1, True, self._weight)
        else:
            stats.prefill_tokens += tokens
            stats.prefill_s += seconds
            service = step_service(tokens, False, self._weight)
        return self.policy.record_service(call, service if self._tokens_unit else seconds)


class CallBook:
    """The active calls of one engine, by call id."""

    def __init__(self, policy: Policy, config: PolicyConfig) -> None:
        self.policy = policy
        self._tokens_unit = config.service_unit is ServiceUnit.TOKENS
        self._charger = ServiceCharger(policy, config)
        self._calls: dict[str, CallState] = {}
        self._seq = 0
        self._waits = WaitLedger(policy)  # every active call not scheduled
        self._scheduled: set[str] = set()  # calls the previous step ran
        self._changed: dict[str, CallState] = {}  # queue changed since last taken

    def __contains__(self, call_id: object) -> bool:
        return call_id in self._calls

    def __len__(self) -> int:
        return len(self._calls)

    def get(self, call_id: str) -> CallState | None:
        return self._calls.get(call_id)

    def admit(self, call_id: str, program_id: str, thread_id: str, arrival: float, *,
              client_priority: int = 0, start_service: float = 0.0,
              program_wait: float = 0.0, remaining_work: float = 0.0,
              program_arrival: float | None = None) -> CallState:
        """A new call: its state, its queue (``Policy.admit``); it waits from now."""
        call = CallState(call_id, program_id, thread_id, arrival, self._seq,
                         client_priority=client_priority, start_service=start_service,
                         program_wait=program_wait, remaining_work=remaining_work,
                         program_arrival=program_arrival)
        self._seq += 1
        self.policy.admit(call)
        self._calls[call_id] = call
        self._waits.start(call)
        return call

    def finish(self, call_id: str) -> CallState | None:
        """A call left the engine (finished or aborted): its state, now final."""
        call = self._calls.pop(call_id, None)
        if call is not None:
            self._waits.stop(call_id)
            self._scheduled.discard(call_id)
            self._changed.pop(call_id, None)
        return call

    def charge_step(self, scheduled: Mapping[str, tuple[int, bool]], step_s: float,
                    waited_s: float) -> None:
        """Charge one step: ``scheduled`` maps the calls it ran to (tokens computed,
        whether it was a decode); ``step_s`` its duration; ``waited_s`` the time since
        the previous step ended (what a waiting call waited, in the seconds unit)."""
        waits, calls = self._waits, self._calls
        changed: list[CallState] = []
        for call_id in self._scheduled - scheduled.keys():  # no longer scheduled: waits
            call = calls.get(call_id)
            if call is not None:
                waits.start(call)
        for call_id in scheduled.keys() - self._scheduled:  # scheduled again
            if waits.stop(call_id):
                changed.append(calls[call_id])
        for call_id, (tokens, decoding) in scheduled.items():
            call = calls.get(call_id)
            if call is not None and self._charger.charge(call, tokens, decoding, step_s):
                changed.append(call)
        changed += waits.tick(1.0 if self._tokens_unit else waited_s, waited_s)
        self._scheduled = {c for c in scheduled if c in calls}
        for call in changed:
            self._changed[call.call_id] = call

    def take_changed(self) -> Iterator[CallState]:
        """Calls whose queue changed since the last take (to re-rank them)."""
        changed, self._changed = self._changed, {}
        return iter(changed.values())
