"""Seeded workload generators: Poisson program arrivals with per-suite call structure."""

from __future__ import annotations

import dataclasses
import random

from autellix_workloads.distributions import (
    LATS_WIDTH,
    OUTPUT_SIGMA,
    PROMPT_SIGMA,
    SHAPES,
    SUITES,
    count_of,
    lognormal_tokens,
    parse_shape,
    think_time_s,
)
from autellix_workloads.spec import CallSpec, ProgramSpec

ALL_SUITES = (*SUITES, "mixed")


def poisson_arrivals(rng: random.Random, rate: float, n: int) -> list[float]:
    """``n`` arrival times of a Poisson process with ``rate`` per second (no clipping)."""
    if rate <= 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    t, out = 0.0, []
    for _ in range(n):
        t += rng.expovariate(rate)
        out.append(t)
    return out


def _call(rng: random.Random, suite: str, token_scale: float) -> CallSpec:
    shape = SHAPES[suite]
    return CallSpec(
        lognormal_tokens(rng, shape.prompt_mean, PROMPT_SIGMA, token_scale),
        lognormal_tokens(rng, shape.output_mean, OUTPUT_SIGMA, token_scale),
    )


def make_program(
    rng: random.Random, suite: str, program_id: str, arrival_s: float, *,
    token_scale: float = 1.0, call_scale: float = 1.0, tool_latency_s: float = 0.05,
    count_shape: str = "lognormal",
) -> ProgramSpec:
    """One program of ``suite`` (chatbot, react or lats); ``count_shape`` is the shape
    of its number of calls (``distributions.parse_shape``)."""
    shape = SHAPES[suite]
    units = count_of(rng, suite, count_shape, max(1.0, shape.mean_units * call_scale),
                     max(1, round(shape.max_units * call_scale)))
    if suite == "lats":
        stages = []
        for _ in range(units):
            stages.append(tuple(_call(rng, suite, token_scale) for _ in range(LATS_WIDTH)))
            stages.append(tuple(_call(rng, suite, token_scale) for _ in range(LATS_WIDTH)))
    else:
        stages = [(_call(rng, suite, token_scale),) for _ in range(units)]
    return ProgramSpec(
        program_id=program_id, suite=suite, arrival_s=arrival_s, stages=tuple(stages),
        system_tokens=round(shape.system_tokens * token_scale),
        tool_latency_s=tool_latency_s if suite == "react" else 0.0,
    )


def with_turns(rng: random.Random, spec: ProgramSpec, think_mean_s: float) -> ProgramSpec:
    """A chat program as an application runs it: one run per user turn on its thread,
    with the user's think time (mean ``think_mean_s``) between turns."""
    gaps = tuple(think_time_s(rng, think_mean_s) for _ in spec.stages[1:])
    return dataclasses.replace(spec, run_per_stage=True, think_s=gaps)


def generate(
    suite: str, num_programs: int, rate: float, *, seed: int = 0, token_scale: float = 1.0,
    call_scale: float = 1.0, tool_latency_s: float = 0.05, think_time_s: float = 0.0,
    count_shape: str = "lognormal",
) -> list[ProgramSpec]:
    """``num_programs`` programs of ``suite`` arriving as a Poisson process at ``rate``/s.

    ``mixed`` draws each program's suite uniformly from chatbot, react and lats. Chatbot
    programs run one turn per run on their thread, ``think_time_s`` apart on average
    (drawn from their own seeded stream: the programs are the same for any think time).
    """
    if suite not in ALL_SUITES:
        raise ValueError(f"Unknown suite {suite!r} (valid: {', '.join(ALL_SUITES)})")
    if num_programs < 1:
        raise ValueError("num_programs must be >= 1")
    parse_shape(count_shape)
    rng = random.Random(seed)
    think_rng = random.Random(f"think-{seed}")
    arrivals = poisson_arrivals(rng, rate, num_programs)
    programs = []
    for i, t in enumerate(arrivals):
        kind = rng.choice(SUITES) if suite == "mixed" else suite
        spec = make_program(rng, kind, f"{kind}-{seed}-{i}", t, token_scale=token_scale,
                            call_scale=call_scale, tool_latency_s=tool_latency_s,
                            count_shape=count_shape)
        if kind == "chatbot":
            spec = with_turns(think_rng, spec, think_time_s)
        programs.append(spec)
    return programs
