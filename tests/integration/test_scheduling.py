"""Program-level scheduling on the real engine: head-of-line blocking and preemption.

Scenario (max_num_seqs=4): a long multi-threaded program first attains service (round
1: four 64-token calls), then saturates the engine (round 2: six 300-token calls, four
running, two queued). A short one-call program arrives during round 2. The assertions
are orderings of completions, not wall-clock limits.
"""

import asyncio
import time

GREEDY = dict(temperature=0.0, ignore_eos=True)
ROUND2_TOKENS = 300


async def run_scenario(eng):
    done_order: list[str] = []

    async def call(prog, name, prompt, max_tokens, thread):
        res = await prog.generate(prompt, thread=thread, max_tokens=max_tokens, **GREEDY)
        done_order.append(name)
        return res

    async with eng.program() as long_prog:
        await asyncio.gather(
            *(call(long_prog, f"r1-{i}", f"warm {i}", 64, f"t{i}") for i in range(4))
        )
        round2 = [
            asyncio.create_task(call(long_prog, f"r2-{i}", f"Deep branch {i}", ROUND2_TOKENS,
                                     f"t{i}"))
            for i in range(6)
        ]
        while len(long_prog.stats().active_threads) < 6:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)  # round 2 is running and saturating the engine
        async with eng.program() as short_prog:
            start = time.monotonic()
            short = await call(short_prog, "short", "Quick question", 16, "main")
            short_latency = time.monotonic() - start
        long_results = await asyncio.gather(*round2)
    return done_order, short, short_latency, long_results


async def test_short_program_overtakes_a_long_one_under_atlas_not_fcfs(engines):
    fcfs_order, fcfs_short, fcfs_latency, _ = await run_scenario(await engines.get("fcfs"))
    atlas_order, atlas_short, atlas_latency, atlas_long = await run_scenario(
        await engines.get("atlas")
    )
    # FCFS: the short call waits for a slot, i.e. until the 4 running long calls end.
    assert sum(1 for n in fcfs_order[: fcfs_order.index("short")] if n.startswith("r2")) >= 4
    # ATLAS: it enters the top queue, preempts a long call and finishes first.
    assert not any(n.startswith("r2") for n in atlas_order[: atlas_order.index("short")])
    assert atlas_short.stats.start_level == 0
    assert sum(r.stats.preemptions for r in atlas_long) >= 1
    assert all(r.usage.completion_tokens == ROUND2_TOKENS for r in atlas_long)
    assert atlas_latency < fcfs_latency  # ordering of the two runs, no absolute limit
    assert fcfs_short.stats.queue_wait_s > atlas_short.stats.queue_wait_s


async def test_preempted_calls_return_the_same_tokens_as_uninterrupted_runs(engines):
    eng = await engines.get("atlas")
    _, _, _, long_results = await run_scenario(eng)
    preempted = [r for r in long_results if r.stats.preemptions > 0]
    assert preempted, "the scenario must preempt at least one call"
    for r in preempted:
        i = int(r.thread_id[1:])
        alone = await eng.generate(f"Deep branch {i}", max_tokens=ROUND2_TOKENS, **GREEDY)
        assert alone.stats.preemptions == 0
        assert alone.token_ids == r.token_ids
