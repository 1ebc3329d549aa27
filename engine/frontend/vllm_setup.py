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


def serving_parts(config: EngineConfig, model: ResolvedModel,
                  max_model_len: int | None) -> tuple[Any, Any, Any]:
    """What vLLM's OpenAI layer needs of a model without a local engine (a front end
    over remote replicas only): its ``VllmConfig``, renderer and input processor, built
    as ``AsyncLLM`` builds them, for the context length the replicas serve."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from vllm.renderers import renderer_from_config
    from vllm.usage.usage_lib import UsageContext
    from vllm.v1.engine.input_processor import InputProcessor

    from autellix_engine.frontend.vllm_args import engine_args

    args = engine_args(config, model)
    if max_model_len is not None:
        args.max_model_len = max_model_len
    vllm_config = args.create_engine_config(UsageContext.OPENAI_API_SERVER)
    renderer = renderer_from_config(vllm_config)
    return vllm_config, renderer, InputProcessor(vllm_config, renderer)
