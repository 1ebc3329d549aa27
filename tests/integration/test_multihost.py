"""The front end and two remote replicas on separate hosts, under network faults.

Each replica is a stock ``vllm serve`` with our scheduler in its own Linux network
namespace, joined to this process's namespace (the front end's host) by a veth pair:
traffic between them crosses a real network link that the test can cut. Under a
bounded load of programs, one replica's link is cut mid-run, then restored; later the
other replica is SIGKILLed mid-run. Every program completes; calls that had returned no
token are retried on the other replica; calls that had are failed and counted; the
process table keeps no call; a restored replica rejoins and takes calls.

Needs root and iproute2 (CI has both); skipped with the reason where a namespace cannot
be created.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, replace

import httpx
import pytest
import pytest_asyncio

from autellix_engine import AutellixEngine, EngineConfig, ReplicaError
from autellix_engine.frontend.vllm_args import replica_command
from tests.integration.conftest import TEST_ENGINE, wait_until

# SmolLM2 (tiny's fast steps flood vLLM's API server on 2 cores: docs/deployment.md);
# one running call per replica, so a replica under load always has calls waiting.
CONFIG = EngineConfig(policy="atlas", **{**TEST_ENGINE, "model": "smollm2", "max_num_seqs": 1})
PORT = 8000
TOKENS = 48  # per call: a call runs about a second, long enough to be cut mid-stream
PROGRAMS, CALLS = 8, 2


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass
class Host:
    """A network namespace with a veth link to ours, and a replica in it."""

    name: str
    subnet: int
    proc: subprocess.Popen | None = None

    @property
    def link(self) -> str:  # our end of the veth pair (interface names: <= 15 chars)
        return f"{self.name}h"

    @property
    def address(self) -> str:
        return f"10.231.{self.subnet}.2"

    @property
    def url(self) -> str:
        return f"http://{self.address}:{PORT}"

    def create(self) -> None:
        _ip("netns", "add", self.name)
        _ip("link", "add", self.link, "type", "veth", "peer", "name", f"{self.name}n")
        _ip("link", "set", f"{self.name}n", "netns", self.name)
        _ip("addr", "add", f"10.231.{self.subnet}.1/24", "dev", self.link)
        _ip("link", "set", self.link, "up")
        ns = ("netns", "exec", self.name, "ip")
        _ip(*ns, "addr", "add", f"{self.address}/24", "dev", f"{self.name}n")
        _ip(*ns, "link", "set", f"{self.name}n", "up")
        _ip(*ns, "link", "set", "lo", "up")  # vLLM's own processes talk over loopback

    def start_replica(self) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_LOGGING_LEVEL": "WARNING"}
        cmd = ["ip", "netns", "exec", self.name,
               *replica_command(CONFIG, host=self.address, port=PORT)]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)

    def set_link(self, up: bool) -> None:
        _ip("link", "set", self.link, "up" if up else "down")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(60)

    def destroy(self) -> None:
        self.kill()
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
        subprocess.run(["ip", "link", "del", self.link], capture_output=True)


def _namespaces_unavailable() -> str | None:
    probe = f"axp{uuid.uuid4().hex[:6]}"
    try:
        done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    except FileNotFoundError:
        return "iproute2 (the ip command) is not installed"
    if done.returncode:
        return f"cannot create a network namespace: {done.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


async def _wait_healthy(hosts: list[Host], timeout_s: float = 400) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as http:
        for host in hosts:
            while True:
                assert host.proc.poll() is None, f"vllm serve in {host.name} exited"
                try:
                    if (await http.get(f"{host.url}/health", timeout=5)).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, f"{host.name}: no replica in {timeout_s} s"
                await asyncio.sleep(1)


@pytest_asyncio.fixture(scope="module")
async def hosts():
    reason = _namespaces_unavailable()
    if reason:
        pytest.skip(reason)
    tag = uuid.uuid4().hex[:4]
    pair = [Host(f"ax{tag}a", 1), Host(f"ax{tag}b", 2)]
    try:
        for host in pair:
            host.create()
            host.start_replica()
        await _wait_healthy(pair)
        yield pair
    finally:
        for host in pair:
            host.destroy()


@dataclass
class Load:
    """Outcome of a bounded load: per program, its completed and failed calls."""

    completed: int = 0
    failed: int = 0
    replicas: set[int] | None = None


async def _program(eng: AutellixEngine, name: str, load: Load) -> None:
    async with eng.program(name) as prog:
        for k in range(CALLS):
            try:
                out = await prog.generate(f"{name} question {k}", max_tokens=TOKENS,
                                          temperature=0.0, ignore_eos=True)
            except ReplicaError:
                load.failed += 1  # a fault after its first token: failed, not re-run
                continue
            assert out.usage.completion_tokens == TOKENS
            load.completed += 1
            load.replicas.add(out.replica)


async def _run_with_fault(eng: AutellixEngine, victim: int, fault) -> Load:
    """Run the load; apply ``fault`` once the victim has calls running and waiting."""
    load = Load(replicas=set())
    retried, failed = eng.counters().retried_calls, eng.counters().failed_calls
    tasks = [asyncio.create_task(_program(eng, f"{fault.__name__}-{i}-{uuid.uuid4().hex[:4]}",
                                          load)) for i in range(PROGRAMS)]
    await wait_until(lambda: eng.replicas()[victim].in_flight >= 3, 120,
                     "the victim has one call running and two waiting")
    fault()
    await asyncio.wait_for(asyncio.gather(*tasks), 600)  # every program completes
    assert load.completed + load.failed == PROGRAMS * CALLS
    assert eng.counters().failed_calls - failed == load.failed, "every failed call is counted"
    assert eng.counters().retried_calls - retried >= 1, "waiting calls moved to the other replica"
    assert all(not p.active_threads for p in eng.programs()), "no call left in the table"
    print(f"{fault.__name__}: {load.completed} completed, {load.failed} failed, "  # noqa: T201
          f"{eng.counters().retried_calls - retried} retried, replicas used {load.replicas}")
    return load


async def test_cut_links_and_killed_replicas_lose_no_program(hosts):
    first, second = hosts
    config = replace(CONFIG, remote_urls=(first.url, second.url), routing="least_used",
                     health_interval_s=1.0, retry_backoff_s=0.1)
    async with AutellixEngine(config) as eng:
        # The link to the first replica is cut mid-run: its silent streams end when
        # its health check fails; it leaves the pool.
        def cut_link():
            first.set_link(False)

        load = await _run_with_fault(eng, 0, cut_link)
        assert not eng.replicas()[0].healthy and 1 in load.replicas

        # Restored, it rejoins and takes calls.
        first.set_link(True)
        await wait_until(lambda: eng.replicas()[0].healthy, 60, "the first replica rejoined")
        assert eng.counters().rejoins >= 1
        outs = await asyncio.gather(*(eng.generate(f"back {i}", max_tokens=4)
                                      for i in range(4)))
        assert 0 in {o.replica for o in outs}

        # The second replica is killed mid-run: connections reset, it leaves the pool.
        load = await _run_with_fault(eng, 1, second.kill)
        await wait_until(lambda: not eng.replicas()[1].healthy, 60, "the killed replica left")
        assert 0 in load.replicas
