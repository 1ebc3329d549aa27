"""The engine's Python API on a real vLLM engine (tiny model)."""

import asyncio

import pytest

from autellix_engine import ProgramEndedError, StreamChunk

GREEDY = dict(temperature=0.0, ignore_eos=True)


async def test_generate_text_returns_complete_result(atlas):
    async with atlas.program() as prog:
        out = await prog.generate("Hello", max_tokens=12, **GREEDY)
    assert out.finish_reason == "length"
    assert out.usage.completion_tokens == len(out.token_ids) == 12
    assert out.usage.prompt_tokens == len(atlas.tokenizer.encode("Hello"))
    assert out.text == atlas.tokenizer.decode(list(out.token_ids))
    assert out.program_id == prog.id and out.thread_id == "main"
    t = out.stats
    assert out.latency_s >= t.execution_s > 0 and out.time_to_first_token_s <= out.latency_s
    assert t.service == pytest.approx(11 + out.usage.prompt_tokens / 16)


async def test_chat_messages_use_the_chat_template(atlas):
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    out = await atlas.generate(messages, max_tokens=4, **GREEDY)
    text = atlas.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert out.usage.prompt_tokens == len(atlas.tokenizer.encode(text, add_special_tokens=False))


async def test_token_id_prompt_and_greedy_determinism(atlas):
    a = await atlas.generate([1, 2, 3, 4, 5], max_tokens=10, **GREEDY)
    b = await atlas.generate([1, 2, 3, 4, 5], max_tokens=10, **GREEDY)
    assert a.token_ids == b.token_ids and a.usage.prompt_tokens == 5


async def test_stream_chunks_add_up_to_the_result(atlas):
    chunks: list[StreamChunk] = []
    async with atlas.program() as prog:
        async for chunk in prog.stream("Hi", max_tokens=8, **GREEDY):
            chunks.append(chunk)
    final = [c for c in chunks if c.result is not None]
    assert len(final) == 1 and chunks[-1] is final[0]
    result = final[0].result
    assert "".join(c.text for c in chunks) == result.text
    assert tuple(t for c in chunks for t in c.token_ids) == result.token_ids
    assert [c.finish_reason for c in chunks].count("length") == 1


async def test_parallel_threads_share_one_program_and_stats_match_the_work(atlas):
    async with atlas.program() as prog:
        first = await prog.generate("Plan the trip.", max_tokens=20, **GREEDY)
        tasks = [
            asyncio.create_task(prog.generate(f"Branch {i}", thread=f"t{i}", max_tokens=16 + i,
                                              **GREEDY))
            for i in range(3)
        ]
        for _ in range(200):  # see the threads while they are active
            snap = prog.stats()
            if len(snap.active_threads) == 3:
                break
            await asyncio.sleep(0.005)
        assert sorted(snap.active_threads) == ["t0", "t1", "t2"]
        branches = await asyncio.gather(*tasks)
        snap = prog.stats()
    calls = [first, *branches]
    assert snap.tally.calls == 4 and snap.active_threads == ()
    assert snap.tally.completion_tokens == sum(c.usage.completion_tokens for c in calls)
    # ATLAS: the critical path, first call then the longest branch (not the sum).
    critical = first.stats.service + max(b.stats.service for b in branches)
    assert snap.service == pytest.approx(critical)
    assert snap.service < sum(c.stats.service for c in calls)
    assert prog.id not in {p.program_id for p in atlas.programs()}  # ended on exit


async def test_an_ended_program_refuses_calls_and_the_engine_keeps_serving(atlas):
    prog = atlas.program()
    await prog.generate("one", max_tokens=2)
    final = prog.end()
    assert final.tally.calls == 1
    with pytest.raises(ProgramEndedError):
        await prog.generate("two", max_tokens=2)
    with pytest.raises(ProgramEndedError):
        await atlas.generate("three", program_id=prog.id, max_tokens=2)
    assert (await atlas.generate("still here", max_tokens=2)).usage.completion_tokens == 2


async def test_unknown_program_id_creates_the_program(atlas):
    out = await atlas.generate("hi", program_id="implicit-prog", max_tokens=3, **GREEDY)
    snap = {p.program_id: p for p in atlas.programs()}["implicit-prog"]
    assert snap.tally.calls == 1 and snap.service == pytest.approx(out.stats.service)
    atlas.end_program("implicit-prog")


async def test_one_off_calls_leave_no_program_behind(atlas):
    before = {p.program_id for p in atlas.programs()}
    await atlas.generate("alone", max_tokens=2)
    assert {p.program_id for p in atlas.programs()} == before


async def test_structured_output_follows_the_json_schema(atlas):
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 8}},
        "required": ["city"],
        "additionalProperties": False,
    }
    import json

    out = await atlas.generate("Where?", json_schema=schema, max_tokens=40, temperature=0.0)
    data = json.loads(out.text)
    assert set(data) == {"city"} and isinstance(data["city"], str)


@pytest.mark.parametrize("policy", ["fcfs", "mlfq", "plas"])
async def test_every_policy_serves_a_program(engines, policy):
    eng = await engines.get(policy)
    async with eng.program() as prog:
        outs = await asyncio.gather(
            *(prog.generate(f"q{i}", thread=f"t{i}", max_tokens=6, **GREEDY) for i in range(3))
        )
    assert [o.usage.completion_tokens for o in outs] == [6, 6, 6]
