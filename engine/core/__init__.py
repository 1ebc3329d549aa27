"""Pure scheduling logic: policies, the process table, routing, retention and swap
planning, statistics, the wire format and the errors (no vLLM, no torch)."""

from autellix_engine.core.calls import CallState
from autellix_engine.core.config import PolicyConfig, PolicyKind, ServiceUnit, parse_policy
from autellix_engine.core.policies import (
    ATLASPolicy,
    FCFSPolicy,
    MLFQPolicy,
    PLASPolicy,
    Policy,
    create_policy,
)
from autellix_engine.core.process_table import (
    CallTicket,
    ProcessTable,
    ProgramEndedError,
    ProgramSnapshot,
    UnknownProgramError,
)
from autellix_engine.core.stats import CallStats, EngineGauges, SwapStats, Tally

__all__ = [
    "ATLASPolicy",
    "CallState",
    "CallStats",
    "CallTicket",
    "EngineGauges",
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
    "Tally",
    "UnknownProgramError",
    "create_policy",
    "parse_policy",
]
