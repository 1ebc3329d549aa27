"""EngineConfig -> vLLM engine arguments: one path for embedded and remote replicas,
every vLLM engine argument reachable by vLLM's name from the config and the CLI."""

import json

import pytest
from vllm.engine.arg_utils import AsyncEngineArgs
from vllm.entrypoints.launchers.cli_args import make_arg_parser
from vllm.utils.argparse_utils import FlexibleArgumentParser

from autellix_engine import EngineConfig
from autellix_engine import cli as engine_cli
from autellix_engine.cli import _engine_config
from autellix_engine.frontend.config import CPU_DEFAULTS
from autellix_engine.frontend.models import resolve_model
from autellix_engine.frontend.vllm_args import (
    engine_args,
    engine_kwargs,
    parse_vllm_flags,
    replica_command,
    to_cli,
)
from autellix_workloads.cli import add_commands

#: What a GPU user types (the issue's example plus common settings).
GPU_FLAGS = [
    "--max-model-len", "8192", "--gpu-memory-utilization", "0.85",
    "--tensor-parallel-size", "1", "--pipeline-parallel-size", "1", "--dtype", "bfloat16",
    "--quantization", "fp8", "--enable-chunked-prefill", "--max-num-batched-tokens", "4096",
    "--max-num-seqs", "64", "--no-enforce-eager", "--kv-cache-dtype", "fp8",
    "--otlp-traces-endpoint", "http://127.0.0.1:4318/v1/traces", "--block-size", "32",
    "--additional-config", '{"mine": 1}',
]
EXPECTED = dict(
    max_model_len=8192, gpu_memory_utilization=0.85, tensor_parallel_size=1,
    pipeline_parallel_size=1, dtype="bfloat16", quantization="fp8",
    enable_chunked_prefill=True, max_num_batched_tokens=4096, max_num_seqs=64,
    enforce_eager=False, kv_cache_dtype="fp8",
    otlp_traces_endpoint="http://127.0.0.1:4318/v1/traces", block_size=32,
)


@pytest.fixture(scope="module")
def tiny():
    return resolve_model("tiny")


def _serve_parser_engine_args(argv):
    """What a stock `vllm serve` makes of a replica's command line."""
    parser = make_arg_parser(FlexibleArgumentParser())
    return AsyncEngineArgs.from_cli_args(parser.parse_args(argv))


def parse_args(argv):
    """The ``autellix`` command line (engine and workload commands)."""
    return engine_cli.parse_args(argv, add_commands)


@pytest.mark.parametrize("command", ["serve", "replica", "bench"])
def test_every_vllm_flag_reaches_vllm_from_the_cli(command, tiny):
    policy = ["--policies" if command == "bench" else "--policy", "plas"]
    args = parse_args([command, "--model", "tiny", *policy, *GPU_FLAGS])
    vllm = args.vllm
    if command == "bench":  # bench keeps its own --max-num-seqs/--max-model-len fields
        vllm = {**vllm, "max_num_seqs": 64}
    config = EngineConfig(model="tiny", policy="plas", vllm_kwargs=vllm)
    built = engine_args(config, tiny)
    for name, value in EXPECTED.items():
        assert getattr(built, name) == value, name
    assert built.scheduler_cls == "autellix_engine.AutellixScheduler"
    assert built.scheduling_policy == "priority"
    assert built.additional_config["mine"] == 1  # merged with ours, not replaced
    assert built.additional_config["autellix"]["policy"] == "plas"


def test_embedded_and_remote_replicas_get_the_same_engine_arguments(tiny):
    config = _engine_config(parse_args(["replica", "--model", "tiny", *GPU_FLAGS]))
    cmd = replica_command(config, port=8123, server_flags=["--api-key", "k"])
    assert cmd[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert cmd[-2:] == ["--api-key", "k"]
    remote = _serve_parser_engine_args(cmd[3:])
    embedded = engine_args(config, tiny)
    for name in AsyncEngineArgs.__dataclass_fields__:
        if name == "kv_transfer_config":  # engine_id is a fresh uuid per parse
            assert (remote.kv_transfer_config is None) == (embedded.kv_transfer_config is None)
            continue
        assert getattr(remote, name) == getattr(embedded, name), name


def test_cpu_defaults_are_small_and_a_gpu_gets_vllms_own(tiny):
    cpu = engine_kwargs(EngineConfig(model="tiny"), tiny, cpu=True)
    gpu = engine_kwargs(EngineConfig(model="tiny"), tiny, cpu=False)
    for name, value in CPU_DEFAULTS.items():
        assert cpu[name] == value
        assert name not in gpu  # vLLM decides
    assert cpu["scheduler_cls"] == "autellix_engine.AutellixScheduler"
    assert gpu["scheduler_cls"] == "autellix_engine.AutellixAsyncScheduler"
    no_async = engine_kwargs(EngineConfig(model="tiny", vllm_kwargs={"async_scheduling": False}),
                             tiny, cpu=False)
    assert no_async["scheduler_cls"] == "autellix_engine.AutellixScheduler"


def test_an_explicit_flag_at_vllms_default_still_overrides_a_cpu_default(tiny):
    flags = parse_vllm_flags(["--no-enforce-eager", "--seed", "0"])
    assert flags == {"enforce_eager": False, "seed": 0}
    kwargs = engine_kwargs(EngineConfig(model="tiny", vllm_kwargs=flags), tiny, cpu=True)
    assert kwargs["enforce_eager"] is False


def test_fields_and_vllm_kwargs_combine_and_conflicts_are_errors(tiny):
    config = EngineConfig(model="tiny", max_num_seqs=3, kv_cache_bytes=64 << 20,
                          vllm_kwargs={"max_num_batched_tokens": 512})
    kwargs = engine_kwargs(config, tiny, cpu=True)
    assert kwargs["max_num_seqs"] == 3 and kwargs["kv_cache_memory_bytes"] == 64 << 20
    assert kwargs["max_num_batched_tokens"] == 512
    assert kwargs["kv_transfer_config"]["kv_connector_extra_config"] == {
        "host_pool_bytes": 64 << 20}
    with pytest.raises(ValueError, match="set twice"):
        EngineConfig(max_num_seqs=3, vllm_kwargs={"max_num_seqs": 4})
    with pytest.raises(ValueError, match="set by the engine"):
        EngineConfig(vllm_kwargs={"model": "x"})
    with pytest.raises(ValueError, match="Unknown vLLM engine argument.*max_num_seq\\b"):
        engine_kwargs(EngineConfig(model="tiny", vllm_kwargs={"max_num_seq": 4}), tiny)
    with pytest.raises(ValueError, match="Invalid vLLM engine argument.*dtype"):
        engine_args(EngineConfig(model="tiny", dtype="float7"), tiny)


def test_bad_cli_flags_are_vllms_usage_errors():
    with pytest.raises(SystemExit):
        parse_args(["serve", "--max-model-lenn", "3"])
    with pytest.raises(SystemExit):
        parse_args(["demo", "--gpu-memory-utilization", "0.5"])  # demo takes no vLLM flags
    with pytest.raises(SystemExit):
        parse_args(["serve", "--", "--api-key", "k"])  # server flags: replica only


def test_to_cli_writes_each_kind_of_value():
    argv = to_cli({"a_b": True, "c": False, "d": [1, "x"], "e": {"k": 1}, "f": 2.5, "g": None})
    assert argv == ["--a-b", "--no-c", "--d", "1", "x", "--e", json.dumps({"k": 1}),
                    "--f", "2.5"]
    with pytest.raises(TypeError):
        to_cli({"h": object()})


def test_kv_retention_reaches_the_scheduler_embedded_and_remote(tiny):
    assert engine_args(EngineConfig(model="tiny"), tiny).additional_config["autellix"][
        "kv_retention"] is False
    config = _engine_config(parse_args(["replica", "--model", "tiny", "--kv-retention"]))
    assert engine_args(config, tiny).additional_config["autellix"]["kv_retention"] is True
    cmd = replica_command(config, port=8123, server_flags=[])
    extra = json.loads(cmd[cmd.index("--additional-config") + 1])
    assert extra["autellix"]["kv_retention"] is True


#: `vllm serve` flags that are not engine or server arguments: they choose how vLLM
#: launches itself (API server processes, gRPC, a YAML file of flags), which
#: `autellix serve` decides itself; and the ones ours replace with the same meaning.
SERVE_ONLY = {"--headless", "--api-server-count", "-asc", "--config", "--grpc"}
OURS = {"--host", "--port", "--api-key", "--model", "-h", "--help"}
#: What a user of `vllm serve` passes for a model with native tool calling.
SERVER_FLAGS = ["--chat-template", "t.jinja", "--enable-auto-tool-choice",
                "--tool-call-parser", "hermes", "--reasoning-parser", "deepseek_r1",
                "--served-model-name", "llama", "--allowed-origins", '["*"]',
                "--enable-log-requests", "--disable-fastapi-docs", "--root-path", "/api"]


def test_every_vllm_serve_flag_is_known_to_the_vllm_layer():
    """Each flag of vLLM's own `vllm serve` parser reaches the engine or vLLM's server
    (or is named above, with the reason)."""
    from vllm.entrypoints.launchers.cli_args import FrontendArgs

    from autellix_engine.frontend.vllm_args import vllm_arg_parser

    engine = set(vllm_arg_parser()._option_string_actions)
    frontend = set(FrontendArgs.add_cli_args(FlexibleArgumentParser())._option_string_actions)
    serve = set(make_arg_parser(FlexibleArgumentParser())._option_string_actions)
    unknown = serve - engine - frontend - SERVE_ONLY - OURS
    assert not unknown
    assert not SERVE_ONLY & (engine | frontend)  # the list above is still true


def test_serve_takes_vllm_serves_flags_and_refuses_unknown_ones():
    args = parse_args(["serve", "--model", "tiny", "--max-model-len", "512", *SERVER_FLAGS])
    # Some are vLLM engine arguments (the engine and vLLM's app both get them).
    assert args.vllm == {"max_model_len": 512, "reasoning_parser": "deepseek_r1",
                         "served_model_name": ["llama"], "enable_log_requests": True}
    assert args.frontend_flags == [
        "--chat-template", "t.jinja", "--enable-auto-tool-choice", "--tool-call-parser",
        "hermes", "--allowed-origins", '["*"]', "--disable-fastapi-docs", "--root-path", "/api"]
    assert parse_args(["serve", "--model", "tiny", "--chat-template", "t.jinja"]
                      ).frontend_flags == ["--chat-template", "t.jinja"]
    with pytest.raises(SystemExit):
        parse_args(["serve", "--no-such-flag"])
    with pytest.raises(SystemExit):  # vLLM's own check of the value
        parse_args(["serve", "--uvicorn-log-level", "loud"])
    with pytest.raises(SystemExit):  # server flags are not for a replica's own parser
        parse_args(["replica", "--model", "tiny", "--enable-auto-tool-choice"])


def test_serve_help_lists_vllm_serves_flags(capsys):
    with pytest.raises(SystemExit):
        parse_args(["serve", "--help"])
    text = capsys.readouterr().out
    for flag in ("--api-key", "--tool-call-parser", "--chat-template", "--max-model-len",
                 "--gpu-memory-utilization", "--ssl-keyfile"):
        assert flag in text, flag
