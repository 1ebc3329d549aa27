"""``autellix replica``'s supervisor, on small stand-in servers (no vLLM).

The stand-in plays ``vllm serve``: a process with a child of its own (the engine core)
in its process group.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from autellix_engine.frontend import replica

PY = sys.executable


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose (its parent has not reaped it yet); one reaped
    # since the signal above has no /proc entry left.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def _wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting: {what}"
        time.sleep(0.05)


def test_a_server_that_keeps_failing_to_start_is_given_up(monkeypatch):
    monkeypatch.setattr(replica, "STABLE_S", 60.0)
    began = time.monotonic()
    status = replica.supervise([PY, "-c", "raise SystemExit(3)"], max_restarts=2,
                               restart_delay_s=0.0)
    assert status == 1 and time.monotonic() - began < 30


def test_a_server_that_exits_on_its_own_is_started_again(tmp_path):
    runs = tmp_path / "runs"
    # Exits twice (as vllm serve does when its engine core was declared dead); the
    # third run asks its supervisor (this test's process) to stop, as systemd would.
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        path = {str(runs)!r}
        n = int(open(path).read()) if os.path.exists(path) else 0
        open(path, "w").write(str(n + 1))
        if n < 2:
            sys.exit(1)
        os.kill(os.getppid(), signal.SIGTERM)
        time.sleep(60)  # until the supervisor passes the SIGTERM on
        """)
    status = replica.supervise([PY, "-c", script], restart_delay_s=0.0)
    assert runs.read_text() == "3" and status == 0  # two restarts, then a clean stop


SERVER = textwrap.dedent("""
    import signal, subprocess, sys, time
    # The "engine core": ignores SIGTERM (only the server's own stop would end it).
    core = subprocess.Popen([sys.executable, "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
    print(core.pid, flush=True)
    if sys.argv[1] == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        def stop(*_):
            core.kill(); core.wait(); sys.exit(0)
        signal.signal(signal.SIGTERM, stop)
    time.sleep(600)
""")
SUPERVISOR = textwrap.dedent("""
    import sys
    from autellix_engine.frontend.replica import supervise
    sys.exit(supervise([sys.executable, "-c", sys.argv[1], sys.argv[2]], stop_timeout_s=2.0))
""")


@pytest.mark.parametrize("server", ["polite", "stubborn"])
def test_sigterm_stops_the_server_and_every_process_it_started(server):
    sup = subprocess.Popen([PY, "-c", SUPERVISOR, SERVER, server], stdout=subprocess.PIPE,
                           text=True)
    try:
        core = int(sup.stdout.readline())
        assert _alive(core)
        sup.send_signal(signal.SIGTERM)
        assert sup.wait(timeout=20) == 0  # the stubborn one after stop_timeout_s
        # A state, not a time: SIGKILL is immediate, but a loaded 2-core host can take
        # seconds to run the exit.
        _wait_for(lambda: not _alive(core), 60, "the engine core to be gone")
    finally:
        if sup.poll() is None:
            sup.kill()
