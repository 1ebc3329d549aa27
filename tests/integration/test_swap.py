"""Swap-based preemption on the real engine (``preemption_mode="swap"``).

SmolLM2 (real weights) rather than ``tiny``: the random-weight model's greedy output
barely depends on its KV cache, so a wrong swap-in would go unnoticed with it (checked
by hand: skipping the swap-in changes SmolLM2's tokens, not tiny's).
"""

import asyncio

import pytest_asyncio

from autellix_engine import AutellixEngine, EngineConfig

MiB = 1 << 20
GREEDY = dict(temperature=0.0, ignore_eos=True)
STORY = "Write a story about a {}."


@pytest_asyncio.fixture(scope="module")
async def swap_engine():
    eng = AutellixEngine(
        EngineConfig(model="smollm2", policy="atlas", max_num_seqs=2, max_model_len=1024,
                     kv_cache_bytes=64 * MiB, preemption_mode="swap")
    )
    await eng.start()
    yield eng
    await eng.aclose()


async def _pool_used(eng) -> int:
    """Host pool blocks in use, as reported by the next call to finish."""
    await eng.generate("ok", max_tokens=1)
    return eng.replicas()[0].gauges.host_pool_used_blocks


async def _preempting_run(eng, animals, cancel=None):
    """A long program (with attained service) runs one call per animal; two fresh
    short programs then take both slots (max_num_seqs=2) and preempt them all.
    ``cancel`` names a long call to cancel while it is preempted."""
    async with eng.program() as long_prog:
        await long_prog.generate("warm up", max_tokens=40, **GREEDY)
        tasks = {a: asyncio.create_task(long_prog.generate(STORY.format(a), thread=a,
                                                           max_tokens=96, **GREEDY))
                 for a in animals}
        await asyncio.sleep(1.0)
        shorts = [asyncio.create_task(eng.generate(f"Name a colour {i}.", max_tokens=48,
                                                   **GREEDY)) for i in range(2)]
        if cancel is not None:
            await asyncio.sleep(0.5)  # both long calls are out, the shorts run
            tasks[cancel].cancel()
        await asyncio.gather(*shorts)
        results = await asyncio.gather(*tasks.values(), return_exceptions=True)
    return dict(zip(tasks, results))


async def test_swapped_out_calls_resume_with_the_same_tokens(swap_engine):
    results = await _preempting_run(swap_engine, ["cat", "dog"])
    swapped = [(a, r) for a, r in results.items() if r.stats.swap.swaps_in > 0]
    assert swapped, "the scenario must swap at least one call out and back in"
    for animal, r in swapped:
        assert r.stats.swap.swaps_out >= r.stats.swap.swaps_in >= 1
        assert r.stats.swap.swapped_blocks >= 1 and r.stats.swap.swap_s > 0
        alone = await swap_engine.generate(STORY.format(animal), max_tokens=96, **GREEDY)
        assert alone.stats.preemptions == 0
        assert alone.token_ids == r.token_ids
    assert await _pool_used(swap_engine) == 0


async def test_aborting_a_swapped_out_call_frees_its_host_blocks(swap_engine):
    results = await _preempting_run(swap_engine, ["cat", "owl"], cancel="cat")
    assert isinstance(results["cat"], asyncio.CancelledError)
    # The other long call, preempted at the same time, shows they were swapped out.
    assert results["owl"].stats.swap.swaps_out >= 1
    assert await _pool_used(swap_engine) == 0


async def test_full_host_pool_falls_back_to_recomputation():
    eng = AutellixEngine(
        EngineConfig(model="smollm2", policy="atlas", max_num_seqs=2, max_model_len=1024,
                     kv_cache_bytes=64 * MiB, preemption_mode="swap", swap_space_bytes=0)
    )
    async with eng:
        results = await _preempting_run(eng, ["cat", "dog"])
        preempted = [(a, r) for a, r in results.items() if r.stats.preemptions]
        assert preempted
        for animal, r in preempted:
            assert r.stats.swap.swaps_out == 0
            assert r.stats.swap.swap_fallbacks == r.stats.preemptions
            alone = await eng.generate(STORY.format(animal), max_tokens=96, **GREEDY)
            assert alone.token_ids == r.token_ids
        assert await _pool_used(eng) == 0
