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

    ``tool_latency_s`` is slept between stages (an external tool or interrupt).
    """

    program_id: str
    suite: str
    arrival_s: float  # seconds after the start of the run
    stages: tuple[tuple[CallSpec, ...], ...]
    system_tokens: int = 0  # a system prompt shared by all programs of the suite
    tool_latency_s: float = 0.0

    @property
    def num_calls(self) -> int:
        return sum(len(s) for s in self.stages)

    @property
    def output_tokens(self) -> int:
        return sum(c.output_tokens for s in self.stages for c in s)

    @property
    def critical_path_tokens(self) -> int:
        """Output tokens along the longest chain (one call per stage)."""
        return sum(max(c.output_tokens for c in s) for s in self.stages)
