"""Bad input gets a clear error and the engine keeps serving."""

import pytest

from autellix_engine import (
    AutellixEngine,
    EngineConfig,
    EngineNotRunningError,
    InvalidRequestError,
    ModelError,
    PromptTooLongError,
)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"temperature": -1.0}, "temperature"),
        ({"top_p": 2.0}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": "ten"}, "max_tokens"),
        ({"nucleus": 0.9}, "Unknown sampling parameters"),
        ({"json_schema": "not a schema"}, "json_schema"),
        ({"stop": ["\ud800"]}, "surrogate"),
        ({"top_k": 10**12}, "top_k"),
        ({"seed": 2**64}, "seed"),
        ({"temperature": float("nan")}, "temperature"),
        ({"remaining_work": -1}, "remaining_work"),
    ],
)
async def test_invalid_sampling_values(atlas, params, match):
    with pytest.raises(InvalidRequestError, match=match):
        await atlas.generate("hi", **params)


@pytest.mark.parametrize(
    "prompt", [None, "", [], [{"text": "no role"}], [-5, 3], [10**9], 42, "\ud800",
               [{"role": "user", "content": "bad \udfff"}]], ids=repr
)
async def test_invalid_prompts(atlas, prompt):
    with pytest.raises(InvalidRequestError):
        await atlas.generate(prompt, max_tokens=2)


async def test_prompt_longer_than_the_context(atlas):
    with pytest.raises(PromptTooLongError, match="1024"):
        await atlas.generate(list(range(1, 1100)), max_tokens=2)


async def test_bad_calls_leak_nothing_and_the_engine_keeps_serving(atlas):
    before = atlas.programs()
    for bad in ({"temperature": -1.0}, {"top_k": -7}):
        with pytest.raises(InvalidRequestError):
            await atlas.generate("x", program_id="bad-inputs", **bad)
    assert "bad-inputs" not in {p.program_id for p in atlas.programs()}
    out = await atlas.generate("fine", max_tokens=3)
    assert out.usage.completion_tokens == 3
    assert len(atlas.programs()) <= len(before) + 1


async def test_engine_not_started_or_closed():
    eng = AutellixEngine(EngineConfig(model="tiny"))
    with pytest.raises(EngineNotRunningError, match="not started"):
        await eng.generate("hi")
    await eng.aclose()
    with pytest.raises(EngineNotRunningError, match="closed"):
        await eng.start()


async def test_unknown_model_fails_at_start_with_a_clear_error():
    with pytest.raises(ModelError, match="Unknown model"):
        await AutellixEngine(EngineConfig(model="no-such-model")).start()


@pytest.mark.parametrize("priority", ["1", 1.0, True, 2**40])
async def test_a_malformed_priority_is_refused(atlas, priority):
    before = {p.program_id for p in atlas.programs()}
    with pytest.raises(InvalidRequestError, match="priority"):
        await atlas.generate("hi", max_tokens=2, priority=priority)
    assert {p.program_id for p in atlas.programs()} == before  # nothing left behind


async def test_priority_needs_a_program_aware_policy(engines):
    fcfs = await engines.get("fcfs")
    with pytest.raises(InvalidRequestError, match="program-aware policy"):
        await fcfs.generate("hi", max_tokens=2, priority=1)
    out = await fcfs.generate("hi", max_tokens=2, priority=0)  # the default is fine
    assert out.usage.completion_tokens == 2
