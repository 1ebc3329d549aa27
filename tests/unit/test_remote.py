"""Remote replica pieces that need no server: the SSE parser and the command line."""

import json

from autellix_engine import EngineConfig, PolicyConfig
from autellix_engine.remote import _CompletionStream
from autellix_engine.vllm_args import replica_command


def test_completion_stream_parser_collects_text_ids_usage_and_finish():
    parser = _CompletionStream()
    events = [
        {"choices": [{"text": "Hel", "token_ids": [1, 2], "finish_reason": None}]},
        {"choices": [{"text": "lo", "token_ids": [3], "finish_reason": "length",
                      "stop_reason": None}]},
        {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3,
                                  "prompt_tokens_details": {"cached_tokens": 4}}},
    ]
    chunks = []
    for e in events:
        chunks += parser.feed(f"data: {json.dumps(e)}")
    chunks += parser.feed("data: [DONE]") + parser.feed(": keep-alive")
    assert chunks == [("Hel", (1, 2)), ("lo", (3,))]
    assert parser.token_ids == [1, 2, 3] and "".join(parser.text) == "Hello"
    assert parser.finish == "length" and parser.cached_tokens == 4
    assert parser.first_token is not None


def test_replica_command_runs_stock_vllm_with_our_scheduler_and_settings():
    config = EngineConfig(model="tiny", policy="plas", max_num_seqs=3,
                          policy_config=PolicyConfig(beta=4.0), preemption_mode="recompute")
    cmd = replica_command(config, port=9123)
    assert cmd[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert cmd[cmd.index("--scheduler-cls") + 1] == "autellix_engine.AutellixScheduler"
    assert cmd[cmd.index("--scheduling-policy") + 1] == "priority"
    settings = json.loads(cmd[cmd.index("--additional-config") + 1])["autellix"]
    assert settings["policy"] == "plas" and settings["policy_config"]["beta"] == 4.0
    assert cmd[cmd.index("--port") + 1] == "9123" and "--kv-transfer-config" not in cmd
