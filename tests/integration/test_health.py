"""Health that tells the truth: a replica whose engine core stopped taking or finishing
work leaves the pool within seconds and is restarted; its calls without a token are
retried on another replica; calls that cannot be served fail clearly; ``/health``,
``/health/ready`` and ``/health/live`` say so.

Two embedded replicas of ``tiny``, probed every 0.5 s with a 3 s timeout; one silent
for 3 s is declared dead.
"""

from __future__ import annotations

import asyncio
import os
import signal

import httpx
import pytest

from autellix_engine import AutellixEngine, EngineConfig, ReplicaError
from autellix_engine.server import build_app
from tests.integration.conftest import TEST_ENGINE, wait_until

#: Seconds within which a silent engine must be noticed (probe period + timeout + slack).
NOTICE_S = 15


@pytest.fixture(scope="module")
async def pool():
    eng = AutellixEngine(EngineConfig(**TEST_ENGINE, replicas=2, health_interval_s=0.5,
                                      health_timeout_s=3.0, stall_timeout_s=3.0))
    await eng.start()
    yield eng
    await eng.aclose()


@pytest.fixture(scope="module")
async def http(pool):
    transport = httpx.ASGITransport(app=await build_app(pool))
    async with httpx.AsyncClient(transport=transport, base_url="http://pool",
                                 timeout=120) as client:
        yield client


def _core_pid(replica) -> int:
    return replica.llm.engine_core.resources.engine_manager.processes[0].pid


async def _poison_input_thread(llm) -> asyncio.Task:
    """Kill an engine core's input thread as the reported request did: a value of the
    wrong type that vLLM's own API passes on and its engine core cannot decode."""
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    bad = SamplingParams(seed="123", max_tokens=1, output_kind=RequestOutputKind.DELTA)

    async def run() -> None:
        async for _ in llm.generate({"prompt_token_ids": [1, 2, 3]}, bad, "poison"):
            pass

    return asyncio.create_task(run())


async def test_a_replica_whose_engine_core_stopped_reading_is_replaced(pool, http):
    silent = pool.replica(0)
    old_llm, old_pid = silent.llm, _core_pid(silent)
    poison = await _poison_input_thread(old_llm)
    retried = pool.counters().retried_calls
    # Calls spread over both replicas (least used first); those sent to the silent one
    # wait until it is declared dead, then run on the other.
    results = await asyncio.wait_for(asyncio.gather(*(
        pool.generate(f"hello {i}", max_tokens=4, ignore_eos=True) for i in range(6))), 120)
    assert all(r.usage.completion_tokens == 4 for r in results)
    assert pool.counters().retried_calls > retried
    assert {r.replica for r in results} == {1}  # none finished on the silent replica
    with pytest.raises(Exception):  # noqa: B017 - vLLM's EngineDeadError
        await poison
    assert (await http.get("/health")).status_code == 200  # replica 1 served throughout
    # Replica 0 was restarted (a new engine core process) and rejoined the pool.
    await wait_until(lambda: silent.llm is not None and silent.llm is not old_llm
                     and pool.replicas()[0].healthy, 180, "replica 0 restarted and back")
    assert _core_pid(silent) != old_pid
    with pytest.raises(ProcessLookupError):
        os.kill(old_pid, 0)
    assert pool.counters().rejoins >= 1
    outs = await asyncio.gather(*(pool.generate("again", max_tokens=2) for _ in range(4)))
    assert {o.replica for o in outs} == {0, 1}


async def test_with_every_engine_dead_health_fails_then_recovers(pool, http):
    await wait_until(lambda: pool.is_running and all(r.healthy for r in pool.replicas()), 180,
                     "both replicas up")
    streaming = asyncio.create_task(pool.generate("long", max_tokens=400, ignore_eos=True))
    await wait_until(lambda: pool.active_calls() == 1, 30, "a call in flight")
    for i in range(2):
        os.kill(_core_pid(pool.replica(i)), signal.SIGKILL)
    await wait_until(lambda: not pool.is_running, NOTICE_S, "the pool noticing")
    assert (await http.get("/health")).status_code == 503
    assert (await http.get("/health/ready")).status_code == 503
    assert (await http.get("/health/live")).status_code == 200  # restarting, not stuck
    with pytest.raises(ReplicaError):  # a clear error, not a hang
        await asyncio.wait_for(streaming, 60)
    refused = await http.post("/v1/completions",
                              json={"model": "tiny", "prompt": "x", "max_tokens": 1})
    assert refused.status_code == 503 and "error" in refused.json()
    await wait_until(lambda: pool.is_running and all(r.healthy for r in pool.replicas())
                     and all(pool.replica(i).llm is not None and not pool.replica(i).llm.errored
                             for i in range(2)),
                     240, "both replicas restarted")
    assert (await http.get("/health")).status_code == 200
    assert (await http.get("/health/ready")).status_code == 200
    ok = await http.post("/v1/completions",
                         json={"model": "tiny", "prompt": "back", "max_tokens": 2})
    assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 2
