"""Simulators that run the same policy objects as the vLLM scheduler: ``des`` (one
engine with KV memory, prefix cache, chunked prefill and preemption, on a cost profile)
and ``stepsim`` (unit steps, for hand-checked schedules such as the paper's toy)."""

from autellix_workloads.sim.des import SimConfig, SimStats, Simulator, simulate
from autellix_workloads.sim.profile import PROFILES, CostProfile
from autellix_workloads.sim.stepsim import SimCall, SimResult, StepProgram, simulate_steps

__all__ = [
    "PROFILES",
    "CostProfile",
    "SimCall",
    "SimConfig",
    "SimResult",
    "SimStats",
    "Simulator",
    "StepProgram",
    "simulate",
    "simulate_steps",
]
