"""Two real tiny replicas behind one process table and the locality balancer."""

import asyncio
import os
import signal

import pytest
import pytest_asyncio

from autellix_engine import AutellixEngine, EngineConfig, ReplicaError
from tests.integration.conftest import TEST_ENGINE, wait_until

GREEDY = dict(temperature=0.0, ignore_eos=True)
THRESHOLD = 32  # tokens: small so the test's "long" prompts cross it


@pytest_asyncio.fixture(scope="module")
async def pool():
    p = AutellixEngine(EngineConfig(policy="atlas", replicas=2, locality_threshold=THRESHOLD,
                                    health_interval_s=1.0, **TEST_ENGINE))
    await p.start()
    yield p
    await p.aclose()


async def test_short_calls_spread_and_long_calls_stay_with_their_program(pool):
    short = [pool.generate(f"q{i}", program_id=f"short-{i}", max_tokens=24, **GREEDY)
             for i in range(4)]
    await asyncio.gather(*short)
    used = {r for i in range(4) for r in pool.program_stats(f"short-{i}").replica_ids}
    assert used == {0, 1}
    long_prompt = list(range(100, 100 + 2 * THRESHOLD))
    for _ in range(4):
        await pool.generate(long_prompt, program_id="long", max_tokens=4, **GREEDY)
        await asyncio.gather(*(pool.generate("busy", program_id=f"noise-{k}", max_tokens=8)
                               for k in range(2)))
    snap = pool.program_stats("long")
    assert len(snap.replica_ids) == 1 and snap.tally.calls == 4


async def test_one_table_counts_a_programs_service_across_replicas(pool):
    async with pool.program("spread") as prog:
        outs = await asyncio.gather(*(prog.generate(f"part {i}", thread=f"t{i}", max_tokens=6,
                                                    **GREEDY) for i in range(4)))
        snap = prog.stats()
    assert snap.replica_ids == (0, 1) and snap.tally.calls == 4
    critical = max(o.stats.service for o in outs)  # ATLAS: parallel calls, max
    assert snap.service == pytest.approx(critical)


async def test_killing_a_replica_lets_the_other_programs_finish(pool):
    victim = pool.replica(1)
    procs = victim.llm.engine_core.resources.engine_manager.processes

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
    # Calls that had tokens from the dead replica fail; the others were retried.
    assert all(isinstance(e, ReplicaError) for e in failed), failed
    assert pool.counters().failed_calls >= len(failed)
    assert all(r.usage.completion_tokens == 120 for r in finished)
    await wait_until(lambda: not pool.replicas()[1].healthy, 60, "replica 1 left the pool")
    assert not pool.programs() or all(
        not p.active_threads for p in pool.programs()), "no leaked call"
    # New programs go to the survivor.
    after = await pool.generate("after", program_id="after", max_tokens=4, **GREEDY)
    assert after.usage.completion_tokens == 4 and pool.program_stats("after").replica_ids == (0,)


async def test_a_restarted_replica_rejoins_the_pool(pool):
    deadline = asyncio.get_running_loop().time() + 240
    while not (pool.replicas()[1].healthy and pool.replica(1).is_running):
        assert asyncio.get_running_loop().time() < deadline, "replica 1 did not rejoin"
        await asyncio.sleep(1)
    assert pool.counters().rejoins >= 1
    await asyncio.gather(*(pool.generate(f"back {i}", program_id=f"back-{i}", max_tokens=16,
                                         **GREEDY) for i in range(4)))
    assert {r for i in range(4) for r in pool.program_stats(f"back-{i}").replica_ids} == {0, 1}


async def test_the_server_serves_a_pool(pool):
    """OpenAI client, ChatOpenAI and a LangGraph graph end to end over two replicas."""
    import httpx
    import openai
    from langchain_openai import ChatOpenAI
    from langgraph.graph import END, START, MessagesState, StateGraph

    from autellix_engine.server import build_app
    from autellix_lg import AutellixChatModel
    from tests.integration.conftest import serving

    async with serving(await build_app(pool)) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            for k in range(2):
                r = await http.post("/v1/completions", headers={"X-Autellix-Program-Id": "srv"},
                                    json={"model": "tiny", "prompt": f"hello {k}",
                                          "max_tokens": 3})
                assert r.status_code == 200
            assert (await http.get("/v1/programs/srv")).json()["num_calls"] == 2
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused")
        chat = await client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=4,
            extra_headers={"X-Autellix-Program-Id": "oa"})
        assert chat.usage.completion_tokens >= 1
        lc = ChatOpenAI(base_url=f"{url}/v1", api_key="unused", model="tiny", max_tokens=4,
                        default_headers={"X-Autellix-Program-Id": "lc"})
        assert (await lc.ainvoke("hello")).usage_metadata["output_tokens"] >= 1

        llm = AutellixChatModel(model="tiny", base_url=url, max_tokens=4, temperature=0.0)

        async def ask(state: MessagesState):
            return {"messages": [await llm.ainvoke(state["messages"])]}

        builder = StateGraph(MessagesState)
        builder.add_node("first", ask)
        builder.add_node("second", ask)
        builder.add_edge(START, "first")
        builder.add_edge("first", "second")
        builder.add_edge("second", END)
        graph = builder.compile()
        out = await graph.ainvoke({"messages": [("user", "go")]},
                                  config={"metadata": {"autellix_program_id": "graph"}})
        assert len(out["messages"]) == 3

        # One program, both nodes' calls (its record stays after the run ends it).
        assert pool.program_stats("anon/graph").tally.calls == 2
        for pid in ("anon/srv", "anon/oa", "anon/lc", "anon/graph"):
            assert set(pool.program_stats(pid).replica_ids) <= {0, 1}

