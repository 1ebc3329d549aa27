"""Pure scheduling logic: policies, queues and the process table (no vLLM, no torch)."""

from autellix_engine.policy.calls import CallState, CallStats, SwapStats
from autellix_engine.policy.config import PolicyConfig, PolicyKind, ServiceUnit, parse_policy
from autellix_engine.policy.policies import (
    ATLASPolicy,
    FCFSPolicy,
    MLFQPolicy,
    PLASPolicy,
    Policy,
    create_policy,
)
from autellix_engine.policy.process_table import (
    CallTicket,
    ProcessTable,
    ProgramEndedError,
    ProgramSnapshot,
    UnknownProgramError,
)

__all__ = [
    "ATLASPolicy",
    "CallState",
    "CallStats",
    "CallTicket",
    "FCFSPolicy",
    "MLFQPolicy",
    "PLASPolicy",
    "Policy",
    "PolicyConfig",
    "PolicyKind",
    "ProcessTable",
    "ProgramEndedError",
    "ProgramSnapshot",
    "ServiceUnit",
    "SwapStats",
    "UnknownProgramError",
    "create_policy",
    "parse_policy",
]
