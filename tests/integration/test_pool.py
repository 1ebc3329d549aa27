"""Two real tiny replicas behind one process table and the locality balancer."""

import asyncio
import os
import signal

import pytest
import pytest_asyncio

from engine import EngineConfig
from engine.pool import EnginePool
from tests.integration.conftest import TEST_ENGINE

GREEDY = dict(temperature=0.0, ignore_eos=True)
THRESHOLD = 32  # tokens: small so the test's "long" prompts cross it


@pytest_asyncio.fixture(scope="module")
async def pool():
    p = EnginePool(EngineConfig(policy="atlas", **TEST_ENGINE), replicas=2, threshold=THRESHOLD,
                   health_interval_s=1.0)
    await p.start()
    yield p
    await p.aclose()


async def test_short_calls_spread_and_long_calls_stay_with_their_program(pool):
    short = [pool.generate(f"q{i}", program_id=f"short-{i}", max_tokens=24, **GREEDY)
             for i in range(4)]
    await asyncio.gather(*short)
    used = {r for i in range(4) for r in pool.table.get(f"short-{i}").replica_ids}
    assert used == {0, 1}
    long_prompt = list(range(100, 100 + 2 * THRESHOLD))
    for _ in range(4):
        await pool.generate(long_prompt, program_id="long", max_tokens=4, **GREEDY)
        await asyncio.gather(*(pool.generate("busy", program_id=f"noise-{k}", max_tokens=8)
                               for k in range(2)))
    snap = pool.table.get("long")
    assert len(snap.replica_ids) == 1 and snap.num_calls == 4


async def test_one_table_counts_a_programs_service_across_replicas(pool):
    async with pool.program("spread") as prog:
        outs = await asyncio.gather(*(prog.generate(f"part {i}", thread=f"t{i}", max_tokens=6,
                                                    **GREEDY) for i in range(4)))
        snap = prog.stats()
    assert snap.replica_ids == (0, 1) and snap.num_calls == 4
    critical = max(o.timings.service for o in outs)  # ATLAS: parallel calls, max
    assert snap.service == pytest.approx(critical)


async def test_killing_a_replica_lets_the_other_programs_finish(pool):
    victim = pool.replicas[1]
    procs = victim._llm.engine_core.resources.engine_manager.processes

    async def program(k):
        return await pool.generate(f"job {k}", program_id=f"job-{k}", max_tokens=120, **GREEDY)

    tasks = [asyncio.create_task(program(k)) for k in range(6)]
    await asyncio.sleep(0.5)
    for proc in procs:
        os.kill(proc.pid, signal.SIGKILL)
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 300)
    finished = [r for r in results if not isinstance(r, BaseException)]
    failed = [r for r in results if isinstance(r, BaseException)]
    assert finished, "programs on the surviving replica finish"
    assert all(type(e).__name__ == "EngineNotRunningError" for e in failed)
    assert all(r.usage.completion_tokens == 120 for r in finished)
    assert not pool.router.healthy[1]
    # New programs go to the survivor.
    after = await pool.generate("after", program_id="after", max_tokens=4, **GREEDY)
    assert after.usage.completion_tokens == 4 and pool.table.get("after").replica_ids == (0,)


async def test_a_restarted_replica_rejoins_the_pool(pool):
    deadline = asyncio.get_running_loop().time() + 240
    while not (pool.router.healthy[1] and pool.replicas[1].is_running):
        assert asyncio.get_running_loop().time() < deadline, "replica 1 did not rejoin"
        await asyncio.sleep(1)
    assert pool.rejoins >= 1
    await asyncio.gather(*(pool.generate(f"back {i}", program_id=f"back-{i}", max_tokens=16,
                                         **GREEDY) for i in range(4)))
    assert {r for i in range(4) for r in pool.table.get(f"back-{i}").replica_ids} == {0, 1}


async def test_the_server_serves_a_pool(pool):
    import httpx

    from tests.integration.test_server import start_server

    healthy = [i for i, ok in enumerate(pool.router.healthy) if ok]
    srv, task, url = await start_server(pool)
    try:
        async with httpx.AsyncClient(base_url=url) as http:
            for k in range(2):
                r = await http.post("/v1/completions", headers={"X-Autellix-Program-Id": "srv"},
                                    json={"prompt": f"hello {k}", "max_tokens": 3})
                assert r.status_code == 200
            stats = (await http.get("/v1/programs/srv")).json()
            assert stats["num_calls"] == 2
        assert set(pool.table.get("anon/srv").replica_ids) <= set(healthy)
    finally:
        srv.should_exit = True
        await task
