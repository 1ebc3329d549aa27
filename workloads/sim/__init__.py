"""Simulators that run the same policy objects as the vLLM scheduler."""

from autellix_workloads.sim.stepsim import SimCall, SimResult, StepProgram, simulate_steps

__all__ = ["SimCall", "SimResult", "StepProgram", "simulate_steps"]
