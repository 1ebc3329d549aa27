"""Every example runs as a user runs it: ``python examples/<name>.py``, a plain script
with its own embedded engine (the ``tiny`` model: these check the plumbing, not the
answers). ``chatopenai_vllm_serve.py`` needs a ``vllm serve``: it runs in
``test_stock_vllm_sessions.py`` against that module's server; the LangGraph Server
project in ``test_langgraph_server.py``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parents[2] / "examples"


def run_example(name: str, **env: str) -> str:
    """Run an example script; its stdout (fails with its output when it fails)."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "AUTELLIX_MODEL": "tiny", **env},
        cwd=EXAMPLES.parent)
    assert done.returncode == 0, f"{name} failed:\n{done.stdout}\n{done.stderr[-4000:]}"
    return done.stdout


def test_the_chatbot_is_one_program_per_thread_across_turns():
    out = run_example("chatbot_threads.py")
    calls = [int(n) for n in re.findall(r"program chatbot:user-42: (\d+) calls", out)]
    assert calls == [1, 2, 3], out  # one program, its calls accumulate turn by turn
    services = [float(s) for s in re.findall(r"attained service ([\d.]+)", out)]
    assert services == sorted(services) and services[0] < services[-1], out
    retained = [int(n) for n in re.findall(r"(\d+) of them kept", out)]
    assert retained[0] == 0 and retained[-1] > 0, "the conversation's KV was kept for it"
    assert "ended: ['chatbot:user-42']" in out


def test_the_tree_search_fans_out_and_picks():
    out = run_example("tree_search.py")
    lines = out.strip().splitlines()
    assert {line.split(":")[0] for line in lines[:3]} == {"history", "geography", "economy"}
    assert lines[-1].startswith("picked -> ")


@pytest.mark.parametrize("model", ["smollm2"])
def test_the_tool_agent_runs_its_loop(model):
    """SmolLM2: a random-weight model's tool choice could loop to the recursion limit."""
    out = run_example("agent_tools.py", AUTELLIX_MODEL=model)
    kinds = [line.split(":")[0] for line in out.strip().splitlines()]
    assert kinds[0] == "human" and kinds[-1] == "ai", out
