"""KV retention between a program's calls on the real engine (``kv_retention=True``).

SmolLM2 (real weights; see test_swap.py for why not ``tiny``) with a 64 MiB KV cache:
about ten 128-token blocks, so one long call needs nearly all of them.
"""

import asyncio

import pytest_asyncio

from autellix_engine import AutellixEngine, EngineConfig

MiB = 1 << 20
GREEDY = dict(temperature=0.0, ignore_eos=True)
HISTORY = " ".join(f"Fact {i}: item {i} is blue." for i in range(30)) + " Summarise."
ENGINE = dict(model="smollm2", policy="atlas", max_num_seqs=2, max_model_len=1024,
              kv_cache_bytes=64 * MiB, kv_retention=True)


@pytest_asyncio.fixture(scope="module")
async def engine():
    eng = AutellixEngine(EngineConfig(preemption_mode="swap", **ENGINE))
    await eng.start()
    yield eng
    await eng.aclose()


def _long_prompt(eng, tokens: int) -> list[int]:
    """Prompt ids that need nearly the whole KV cache."""
    ids = eng.tokenizer.encode("The quick brown fox jumps over the lazy dog. " * 120)
    return ids[:tokens]


async def _fresh(eng, prompt):
    """The prompt run on an empty prefix cache (vLLM's reset; retention lets go first)."""
    assert await eng.replica(0).llm.reset_prefix_cache()
    result = await eng.generate(prompt, max_tokens=24, **GREEDY)
    assert result.usage.cached_tokens == 0
    return result


async def _probe(eng):
    """A one-off call, then the engine's gauges (each finished call reports them)."""
    await eng.generate("ok", max_tokens=1)
    return eng.replicas()[0].gauges


async def _two_calls(eng, pid: str, between=None):
    first = [{"role": "user", "content": HISTORY}]
    r1 = await eng.generate(first, program_id=pid, max_tokens=16, **GREEDY)
    if between is not None:
        await between()
    second = first + [{"role": "assistant", "content": r1.text},
                      {"role": "user", "content": "Now list three of them."}]
    r2 = await eng.generate(second, program_id=pid, max_tokens=24, **GREEDY)
    return second, r2


async def test_memory_pressure_moves_retained_kv_to_host_and_the_next_call_reloads_it(engine):
    pressure = {}

    async def long_one_off():
        # Needs more blocks than are free while the program's history is pinned.
        pressure["r"] = await engine.generate(_long_prompt(engine, 930), max_tokens=8, **GREEDY)
        pressure["retained"] = engine.replicas()[0].gauges.retained_device_blocks  # as it ended

    async with engine.program() as prog:
        second, r2 = await _two_calls(engine, prog.id, long_one_off)
    # Retention yielded at once: the long call was neither refused nor preempted.
    assert pressure["r"].stats.preemptions == 0
    assert pressure["retained"] == 0
    reloaded = r2.stats.swap.retained_reload_tokens
    assert reloaded >= 128, "the history must come back from the host pool"
    assert r2.stats.retained_tokens >= reloaded
    assert r2.usage.cached_tokens >= reloaded
    assert (await _fresh(engine, second)).token_ids == r2.token_ids
    stats = await _probe(engine)
    assert stats.retained_host_blocks == 0 and stats.retained_device_blocks == 0


async def test_a_multi_threaded_program_under_pressure_loses_nothing(engine):
    """Threads of one program finish, are pinned and released under pressure in turn."""
    async with engine.program() as prog:
        threads = [engine.generate([{"role": "user", "content": f"{HISTORY} Part {i}."}],
                                   program_id=prog.id, thread=f"branch:{i}", max_tokens=16,
                                   **GREEDY) for i in range(3)]
        pressure = engine.generate(_long_prompt(engine, 930), max_tokens=8, **GREEDY)
        *branches, _ = await asyncio.gather(*threads, pressure)
    for i, branch in enumerate(branches):
        prompt = [{"role": "user", "content": f"{HISTORY} Part {i}."}]
        assert (await _fresh(engine, prompt)).token_ids[:16] == branch.token_ids
    stats = await _probe(engine)
    assert stats.retained_host_blocks == 0 and stats.retained_device_blocks == 0


async def test_an_ended_programs_kv_is_released_by_the_next_request(engine):
    async with engine.program() as prog:
        await engine.generate([{"role": "user", "content": HISTORY}], program_id=prog.id,
                              max_tokens=8, **GREEDY)
        assert (await _probe(engine)).retained_device_blocks >= 1
    # The program ended (async with); the probe carries the notice to the replica.
    assert (await _probe(engine)).retained_device_blocks == 0
    snapshot = [p for p in engine.programs() if p.program_id == prog.id]
    assert not snapshot  # and the front end forgot it


async def test_without_pressure_the_next_call_hits_its_pinned_blocks():
    eng = AutellixEngine(EngineConfig(preemption_mode="recompute", **ENGINE))
    async with eng:
        async with eng.program() as prog:
            # One-off calls in between: they evict the ordinary prefix cache only.
            async def others():
                for i in range(2):
                    await eng.generate(HISTORY.replace("blue", f"red {i}"), max_tokens=8)

            second, r2 = await _two_calls(eng, prog.id, others)
            program = next(p for p in eng.programs() if p.program_id == prog.id)
        assert r2.stats.retained_tokens >= 3 * 128
        assert r2.stats.swap.retained_reload_tokens == 0
        # Only the last, partly filled block of the history is computed again.
        assert r2.stats.reprefilled_tokens < 128
        assert program.tally.retained_tokens == r2.stats.retained_tokens
        assert 0 < program.tally.prefix_hit_rate < 1
        assert (await _fresh(eng, second)).token_ids == r2.token_ids
