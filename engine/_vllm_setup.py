"""Building vLLM's ``AsyncLLM`` for an ``EngineConfig`` (vLLM-version-specific glue)."""

from __future__ import annotations

import logging
import os
from typing import Any

from autellix_engine.config import EngineConfig
from autellix_engine.models import ResolvedModel
from autellix_engine.policy.config import PolicyKind

logger = logging.getLogger(__name__)


def on_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def resolve_dtype(config: EngineConfig) -> str:
    """``"auto"`` is float32 on CPU (bf16 is ~4x slower on AVX2-only CPUs), else as given."""
    return "float32" if config.dtype == "auto" and on_cpu() else config.dtype


def scheduler_class_path(config: EngineConfig) -> str:
    """Dotted path of the scheduler class for this platform.

    CPU builds force async scheduling off, so they need the ``Scheduler`` subclass;
    GPU builds default to async scheduling, where subclassing ``AsyncScheduler`` avoids
    vLLM's ~78% latency regression for ``Scheduler`` subclasses (vLLM PR #43724).
    """
    if on_cpu() or config.vllm_kwargs.get("async_scheduling") is False:
        return "autellix_engine.scheduler.AutellixScheduler"
    return "autellix_engine.scheduler.AutellixAsyncScheduler"


def engine_args(config: EngineConfig, model: ResolvedModel) -> Any:
    """The ``AsyncEngineArgs`` for ``config``."""
    from vllm.engine.arg_utils import AsyncEngineArgs

    from autellix_engine.scheduler import scheduler_settings

    dtype = resolve_dtype(config)
    kwargs: dict[str, Any] = dict(
        model=str(model.path),
        tokenizer=str(model.path),
        served_model_name=[config.model if os.path.sep not in config.model else model.path.name],
        dtype=dtype,
        max_model_len=config.max_model_len,
        max_num_seqs=config.max_num_seqs,
        enforce_eager=config.enforce_eager,
        enable_prefix_caching=config.enable_prefix_caching,
        seed=config.seed,
        generation_config="vllm",  # our calls pass explicit sampling values
        scheduler_cls=scheduler_class_path(config),
        # Our policies put the queue level in request.priority; vLLM's priority
        # queue then gives strict priority with FCFS inside a level.
        scheduling_policy="fcfs" if config.policy_kind is PolicyKind.FCFS else "priority",
        additional_config=scheduler_settings(config.policy_kind, config.policy_config),
        disable_log_stats=False,
    )
    if config.kv_cache_bytes is not None:
        kwargs["kv_cache_memory_bytes"] = config.kv_cache_bytes
    if resolve_preemption_mode(config) == "swap":
        kwargs["kv_transfer_config"] = swap_transfer_config(config)
    if config.otlp_traces_endpoint:
        kwargs["otlp_traces_endpoint"] = config.otlp_traces_endpoint
    if model.dummy_weights:
        kwargs["load_format"] = "dummy"
    kwargs.update(config.vllm_kwargs)
    return AsyncEngineArgs(**kwargs)


def resolve_preemption_mode(config: EngineConfig) -> str:
    """``"swap"`` or ``"recompute"`` for ``config`` (``"auto"``: swap when built)."""
    if config.preemption_mode != "auto":
        return config.preemption_mode
    from autellix_engine.swap import ops

    if ops.backend() == "extension":
        return "swap"
    logger.info("preemption_mode=auto -> recompute (%s)", ops.fallback_reason())
    return "recompute"


def swap_transfer_settings(config: EngineConfig) -> dict[str, Any]:
    """The ``--kv-transfer-config`` (as a dict) that installs our swap connector."""
    from autellix_engine.swap.connector import POOL_BYTES_KEY

    pool = config.swap_space_bytes
    if pool is None:
        pool = config.kv_cache_bytes if config.kv_cache_bytes is not None else 1 << 30
    return {
        "kv_connector": "AutellixSwapConnector",
        "kv_connector_module_path": "autellix_engine.swap.connector",
        "kv_role": "kv_both",
        "kv_connector_extra_config": {POOL_BYTES_KEY: int(pool)},
    }


def swap_transfer_config(config: EngineConfig) -> Any:
    """vLLM's ``KVTransferConfig`` that installs our swap connector."""
    from vllm.config import KVTransferConfig

    return KVTransferConfig(**swap_transfer_settings(config))


def build_async_llm(config: EngineConfig, model: ResolvedModel) -> Any:
    """Start vLLM's ``AsyncLLM`` (spawns the engine-core process)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from vllm.v1.engine.async_llm import AsyncLLM

    from autellix_engine.main_guard import children_skip_main

    args = engine_args(config, model)
    logger.info("Starting vLLM: model=%s policy=%s", config.model, config.policy)
    with children_skip_main():  # scripts need no `if __name__ == "__main__":` guard
        return AsyncLLM.from_engine_args(args)


def is_engine_dead(error: BaseException) -> bool:
    from vllm.v1.engine.exceptions import EngineDeadError

    return isinstance(error, EngineDeadError)
