"""Starting vLLM's ``AsyncLLM`` for an ``EngineConfig`` (vLLM-version-specific glue)."""

from __future__ import annotations

import logging
import os
from typing import Any

from autellix_engine.frontend.config import EngineConfig
from autellix_engine.frontend.models import ResolvedModel

logger = logging.getLogger(__name__)


def build_async_llm(config: EngineConfig, model: ResolvedModel,
                    stat_loggers: list[Any] | None = None) -> Any:
    """Start vLLM's ``AsyncLLM`` (spawns the engine-core process); ``stat_loggers``
    are vLLM stat-logger factories added to its own."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from vllm.v1.engine.async_llm import AsyncLLM

    from autellix_engine.frontend.main_guard import children_skip_main
    from autellix_engine.frontend.vllm_args import engine_args

    args = engine_args(config, model)
    logger.info("Starting vLLM: model=%s policy=%s", config.model, config.policy)
    with children_skip_main():  # scripts need no `if __name__ == "__main__":` guard
        return AsyncLLM.from_engine_args(args, stat_loggers=stat_loggers)


def is_engine_dead(error: BaseException) -> bool:
    from vllm.v1.engine.exceptions import EngineDeadError

    return isinstance(error, EngineDeadError)
