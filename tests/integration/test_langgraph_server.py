"""LangGraph Server (``langgraph dev``) running the example project on an embedded
engine: each thread is one program across its runs, an interrupt and its resume
included, and deleting the thread ends the program.

The server is the real one (``langgraph-cli[inmem]``), started in a copy of
``examples/langgraph_server`` with the ``tiny`` model; the client is ``langgraph_sdk``.
What the engine saw is read from the example's own ``GET /autellix/programs``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("langgraph_api", reason="needs langgraph-cli[inmem] (the test extra)")
from langgraph_sdk import get_sync_client  # noqa: E402

EXAMPLE = Path(__file__).parents[2] / "examples" / "langgraph_server"
START_TIMEOUT_S = 300
# A first turn long enough to fill whole KV blocks (128 tokens each on CPU): only full
# blocks are cached, so only then can the next turn reuse the first turn's KV.
HISTORY = " ".join(["the tool returned a long list of cities and their weather"] * 40)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    project = tmp_path_factory.mktemp("lgserver") / "app"
    shutil.copytree(EXAMPLE, project)  # the server writes its state beside the project
    port = _free_port()
    env = {**os.environ, "AUTELLIX_MODEL": "tiny", "HF_HUB_OFFLINE": "1",
           "LANGGRAPH_NO_VERSION_CHECK": "true", "LANGSMITH_TRACING": "false"}
    log = (project / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "langgraph_cli", "dev", "--no-browser", "--no-reload",
         "--n-jobs-per-worker", "4", "--host", "127.0.0.1", "--port", str(port)],
        cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert proc.poll() is None, (project / "server.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/ok", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "langgraph dev did not start"
            time.sleep(0.5)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
        log.close()


def _program(url: str, program_id: str) -> dict | None:
    table = httpx.get(f"{url}/autellix/programs", timeout=30).json()
    return next((p for p in table if p["program_id"] == program_id), None)


def test_a_thread_is_one_program_across_runs_interrupts_and_resumes(server):
    client = get_sync_client(url=server)
    assistant = client.assistants.search(graph_id="chat")[0]["assistant_id"]
    thread = client.threads.create()["thread_id"]
    program_id = f"{assistant}:{thread}"

    first = client.runs.wait(thread, "chat", input={"messages": [("user", HISTORY)]})
    assert first["messages"][-1]["type"] == "ai"
    after_one = _program(server, program_id)
    assert after_one is not None, "the thread's program is in the engine's table"
    assert after_one["calls"] == 1 and not after_one["active_threads"]

    # A turn that interrupts: no call yet; its resume is a new run of the same program.
    asked = client.runs.wait(thread, "chat", input={"messages": [("user", "confirm: delete")]})
    assert asked["__interrupt__"][0]["value"] == {"question": "Are you sure?"}
    assert client.threads.get(thread)["status"] == "interrupted"
    assert _program(server, program_id)["calls"] == 1
    resumed = client.runs.wait(thread, "chat", command={"resume": "yes"})
    assert resumed["messages"][-1]["type"] == "ai"

    after = _program(server, program_id)
    assert after["calls"] == 2, "one program for both runs of the turn and the first turn"
    assert after["service"] > after_one["service"], "its attained service accumulated"
    assert after["retained_tokens"] > 0, "the resumed turn reused the first turn's retained KV"
    others = [p for p in httpx.get(f"{server}/autellix/programs", timeout=30).json()
              if p["program_id"].endswith(thread) and p["program_id"] != program_id]
    assert not others, "no run of the thread became a program of its own"

    client.threads.delete(thread)  # the checkpointer ends the program
    assert _program(server, program_id) is None


def test_threads_are_separate_programs_and_a_stateless_run_is_its_own(server):
    client = get_sync_client(url=server)
    threads = [client.threads.create()["thread_id"] for _ in range(2)]
    for thread in threads:
        client.runs.wait(thread, "chat", input={"messages": [("user", "Hi")]})
    client.runs.wait(None, "chat", input={"messages": [("user", "Hi")]})  # temporary thread
    table = httpx.get(f"{server}/autellix/programs", timeout=30).json()
    mine = [p for p in table if p["program_id"].split(":")[-1] in threads]
    assert len(mine) == 2 and all(p["calls"] == 1 for p in mine)
    # The server deletes a stateless run's thread afterwards: its program ended too.
    assert len(table) == 2, table
    for thread in threads:
        client.threads.delete(thread)
    assert httpx.get(f"{server}/autellix/programs", timeout=30).json() == []
