"""What a generated program is: its arrival, and its calls as stages."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CallSpec:
    """One LLM call: new prompt tokens it adds, and output tokens it must produce."""

    prompt_tokens: int
    output_tokens: int


@dataclass(frozen=True, slots=True)
class ProgramSpec:
    """A program: stages run in order; the calls of one stage run in parallel.

    ``tool_latency_s`` is slept between stages (an external tool or interrupt), or
    ``tool_s[i]`` before stage ``i + 1`` where a replayed trace recorded each gap. A
    program ``run_per_stage`` (a chat) runs each stage as a run of its own on the
    program's LangGraph thread, as a user's turn; ``think_s[i]`` is the user's think
    time before stage ``i + 1`` (not counted in the program's latency).
    """

    program_id: str
    suite: str
    arrival_s: float  # seconds after the start of the run
    stages: tuple[tuple[CallSpec, ...], ...]
    system_tokens: int = 0  # a system prompt shared by all programs of the suite
    tool_latency_s: float = 0.0
    run_per_stage: bool = False
    think_s: tuple[float, ...] = ()
    tool_s: tuple[float, ...] = ()

    def gap_before(self, stage: int) -> float:
        """Seconds between stage ``stage - 1``'s end and stage ``stage``'s start: the
        user's think time, and the tool's."""
        think = self.think_s[stage - 1] if self.think_s else 0.0
        return think + (self.tool_s[stage - 1] if self.tool_s else self.tool_latency_s)

    @property
    def idle_s(self) -> float:
        """Think time in all: the user's, not the system's, so not part of latency."""
        return sum(self.think_s)

    @property
    def num_calls(self) -> int:
        return sum(len(s) for s in self.stages)

    @property
    def output_tokens(self) -> int:
        return sum(c.output_tokens for s in self.stages for c in s)
