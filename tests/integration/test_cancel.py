"""Cancelling a call aborts its engine request: nothing is left running."""

import asyncio

GREEDY = dict(temperature=0.0, ignore_eos=True)


async def wait_for(predicate, timeout=30.0):
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_cancelled_calls_free_their_slots(atlas):
    prog = atlas.program()
    # Fill every running slot (max_num_seqs=4) with calls that would run ~900 steps.
    tasks = [
        asyncio.create_task(prog.generate(f"long {i}", thread=f"t{i}", max_tokens=900, **GREEDY))
        for i in range(4)
    ]
    await wait_for(lambda: len(prog.stats().active_threads) == 4)
    await asyncio.sleep(0.3)  # let them run
    for t in tasks:
        t.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    snap = prog.stats()
    assert snap.active_threads == () and snap.num_aborted == 4
    await wait_for(lambda: atlas.replica(0).llm.get_num_unfinished_requests() == 0)
    # Were the requests still running in the engine core, this call would queue
    # behind ~900 steps of them; aborted, it is scheduled at once.
    out = await prog.generate("after", max_tokens=16, **GREEDY)
    assert out.stats.queue_wait_s < out.stats.execution_s
    prog.end()


async def test_leaving_a_stream_early_aborts_the_call(atlas):
    async with atlas.program() as prog:
        agen = prog.stream("stream me", max_tokens=900, **GREEDY)
        seen = 0
        async for chunk in agen:
            seen += len(chunk.token_ids)
            if seen >= 3:
                break
        await agen.aclose()
        assert prog.stats().active_threads == () and prog.stats().num_aborted == 1
    await wait_for(lambda: atlas.replica(0).llm.get_num_unfinished_requests() == 0)
