"""Hugging Face model ids, offline, as ``vllm serve`` resolves them: a hub-cache layout
made here from the packaged ``tiny`` model (its config and tokenizer; random weights,
``--load-format dummy``) serves as ``autellix/tiny-hub`` to ``autellix serve --model``
and to ``AutellixChatModel(model=...)`` in a plain script, with ``HF_HUB_OFFLINE=1``."""

from __future__ import annotations

import os
import subprocess
import sys

import openai

from tests.hub_cache import HUB_ID, hub_cache
from tests.integration.test_serve_process import _port, _start

ENGINE_FLAGS = ["--max-num-seqs", "2", "--max-model-len", "512",
                "--kv-cache-memory-bytes", str(128 << 20), "--load-format", "dummy"]


def test_serve_takes_a_hub_id_offline_and_serves_it_by_that_name(tmp_path):
    env = {"HF_HUB_CACHE": str(hub_cache(tmp_path)), "HF_HUB_OFFLINE": "1"}
    port = _port()
    proc = _start(["serve", "--model", HUB_ID, *ENGINE_FLAGS, "--port", str(port)], port, env)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="EMPTY")
        assert [m.id for m in client.models.list()] == [HUB_ID]
        out = client.chat.completions.create(model=HUB_ID, max_tokens=3,
                                             messages=[{"role": "user", "content": "Hi"}])
        assert out.usage.completion_tokens == 3
    finally:
        proc.terminate()
        proc.wait(60)


def test_a_plain_script_runs_the_chat_model_on_a_hub_id(tmp_path):
    script = tmp_path / "app.py"
    script.write_text(
        "from autellix_lg import AutellixChatModel\n"
        f"llm = AutellixChatModel(model={HUB_ID!r}, max_tokens=2, engine_config={{\n"
        "    'max_model_len': 512, 'vllm_kwargs': {'load_format': 'dummy'}})\n"
        "print('ANSWERED', llm.invoke('Hi').usage_metadata['output_tokens'])\n")
    env = {**os.environ, "HF_HUB_CACHE": str(hub_cache(tmp_path)), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ANSWERED 2", done.stdout


def test_a_hub_id_missing_from_the_cache_is_a_clear_error(tmp_path):
    env = {"HF_HUB_CACHE": str(tmp_path / "empty"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "autellix_workloads.cli", "serve", "--model", "org/missing",
         "--port", str(_port())], capture_output=True, text=True, timeout=120,
        env={**os.environ, **env})
    assert done.returncode != 0
    assert "'org/missing' is not in the hub cache" in done.stdout + done.stderr
