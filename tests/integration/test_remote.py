"""A remote replica: stock ``vllm serve`` with our scheduler, mixed with an embedded one.

The server is vLLM's own OpenAI server
(``autellix_engine.frontend.vllm_args.replica_command``), so these tests show that
program metadata reaches our scheduler through ``vllm_xargs`` alone.
"""

import asyncio
import os
import signal
import socket
import subprocess
import time
from dataclasses import replace

import httpx
import pytest
import pytest_asyncio

from autellix_engine import AutellixEngine, EngineConfig, InvalidRequestError
from autellix_engine.frontend.vllm_args import replica_command
from tests.integration.conftest import TEST_ENGINE, wait_until

GREEDY = dict(temperature=0.0, ignore_eos=True)
# SmolLM2, not tiny: tiny's ~4 ms steps flood a stock vLLM API server on 2 cores, which
# then holds new HTTP requests back for seconds (docs/deployment.md), and the short
# call of the first test reached the engine after the long ones had ended.
CONFIG = EngineConfig(policy="atlas", **{**TEST_ENGINE, "model": "smollm2"})
LONG = 300  # tokens: long enough that no long call ends while the short one runs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest_asyncio.fixture(scope="module")
async def remote_server():
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_LOGGING_LEVEL": "WARNING"}
    proc = subprocess.Popen(replica_command(CONFIG, port=port), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    async with httpx.AsyncClient() as http:
        while True:
            assert proc.poll() is None, "vllm serve exited during start-up"
            try:
                if (await http.get(f"{url}/health", timeout=2)).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "vllm serve did not start in 300 s"
            await asyncio.sleep(1)
    yield proc, url
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)


async def test_program_metadata_reaches_the_remote_scheduler(remote_server):
    """Remote-only pool: a fresh program overtakes a saturating program with attained
    service, which needs the program's service to arrive with each request."""
    _, url = remote_server
    async with AutellixEngine(replace(CONFIG, remote_urls=(url,))) as remote:
        order = []

        async def call(prog, name, prompt, n):
            r = await prog.generate(prompt, thread=name, max_tokens=n, **GREEDY)
            order.append(name)
            return r

        async with remote.program() as long_prog:
            await asyncio.gather(*(call(long_prog, f"w{i}", f"warm {i}", 64) for i in range(4)))
            streaming: set[str] = set()

            async def long_call(name, prompt):
                result = None
                async for chunk in long_prog.stream(prompt, thread=name, max_tokens=LONG,
                                                    **GREEDY):
                    streaming.add(name)
                    result = chunk.result or result
                order.append(name)
                return result

            longs = [asyncio.create_task(long_call(f"l{i}", f"branch {i}")) for i in range(6)]
            while len(streaming) < 4:  # four long calls run (max_num_seqs), two wait
                await asyncio.sleep(0.01)
            done_before = set(order)
            async with remote.program() as short_prog:
                short = await call(short_prog, "short", "quick", 8)
            results = await asyncio.gather(*longs)
        running_at_submit = [f"l{i}" for i in range(6) if f"l{i}" not in done_before]
        assert len(running_at_submit) == 6, "the long calls must still be running"
        overtaken_by = [n for n in order[: order.index("short")] if n in running_at_submit]
        assert overtaken_by == []
        assert all(r.usage.completion_tokens == LONG for r in results)
        snap = remote.program_stats(long_prog.id)
        assert snap.service >= LONG  # ATLAS: the longest thread
        # The remote scheduler's own record of each call came back with its stream.
        assert short.stats.start_level == 0 and short.stats.execution_s > 0
        assert all(0 < r.stats.decode_tokens < LONG and r.stats.execution_s > 0
                   for r in results)
        assert sum(r.stats.demotions for r in results) >= 1  # long calls used their quanta
        assert sum(r.stats.preemptions for r in results) >= 1, "the short call preempted one"
        assert snap.tally.queue_wait_s > 0 and snap.tally.preemptions >= 1


async def test_a_bad_request_fails_alone_and_the_replica_stays(remote_server):
    """A 4xx is the request's fault: no retry, no health change."""
    _, url = remote_server
    async with AutellixEngine(replace(CONFIG, remote_urls=(url,))) as remote:
        with pytest.raises(InvalidRequestError, match="vocab|logit"):
            await remote.generate("hi", max_tokens=2, logit_bias={10**7: 1.0})
        assert [r.healthy for r in remote.replicas()] == [True]
        assert remote.counters().retried_calls == 0
        out = await remote.generate("hi", max_tokens=2, logprobs=1, **GREEDY)
        assert out.usage.completion_tokens == 2
        # Logprobs come back from vLLM's server with token ids, as from an embedded engine.
        assert [lp.token_id for lp in out.logprobs] == list(out.token_ids)
        assert all(lp.top[0][0] == lp.token_id for lp in out.logprobs)  # greedy


async def test_vllms_layer_over_a_remote_only_pool(remote_server):
    """vLLM's own OpenAI layer in front of remote replicas: calls travel as token ids
    (rendering, tool parsing and detokenizing happen in the front end), and streaming,
    non-streaming, ``n``, logprobs and usage come back as from an embedded engine; a
    setting the bridge cannot carry is a 400, and the service stays."""
    import openai

    from autellix_engine.server import ServerSettings, build_app
    from tests.integration.conftest import serving

    _, url = remote_server
    async with AutellixEngine(replace(CONFIG, remote_urls=(url,))) as remote:
        app = await build_app(remote, ServerSettings())
        async with serving(app) as front:
            client = openai.AsyncOpenAI(base_url=f"{front}/v1", api_key="x", max_retries=0)
            messages = [{"role": "user", "content": "Name a colour."}]
            chat = await client.chat.completions.create(
                model="smollm2", messages=messages, max_tokens=8, temperature=0.0,
                logprobs=True, top_logprobs=2, extra_headers={"X-Session-ID": "conv-1"})
            choice = chat.choices[0]
            assert choice.message.content and chat.usage.completion_tokens == 8
            assert len(choice.logprobs.content) == 8
            assert all(len(t.top_logprobs) == 2 for t in choice.logprobs.content)
            assert remote.is_program_running("anon/conv-1")
            stream = await client.chat.completions.create(
                model="smollm2", messages=messages, max_tokens=8, temperature=0.0,
                stream=True, stream_options={"include_usage": True})
            pieces, usage = [], None
            async for chunk in stream:
                pieces += [c.delta.content or "" for c in chunk.choices]
                usage = chunk.usage or usage
            assert "".join(pieces) == choice.message.content  # greedy: the same answer
            assert usage.completion_tokens == 8
            two = await client.completions.create(model="smollm2", prompt="Once upon",
                                                  max_tokens=4, n=2, temperature=1.0, seed=1)
            assert sorted(c.index for c in two.choices) == [0, 1]
            with pytest.raises(openai.BadRequestError):
                await client.completions.create(model="smollm2", prompt="hi", max_tokens=2,
                                                extra_body={"prompt_logprobs": 1})
            again = await client.completions.create(model="smollm2", prompt="hi",
                                                    max_tokens=2)
            assert again.usage.completion_tokens == 2
            assert remote.active_calls() == 0


async def test_mixed_pool_spreads_calls_and_survives_the_remote_dying(remote_server):
    proc, url = remote_server
    pool = AutellixEngine(replace(CONFIG, replicas=1, remote_urls=(url,), routing="least_used",
                                  health_interval_s=1.0))
    async with pool:
        outs = await asyncio.gather(*(pool.generate(f"q{i}", program_id=f"p{i}",
                                                    max_tokens=16, **GREEDY) for i in range(4)))
        used = {r for i in range(4) for r in pool.program_stats(f"p{i}").replica_ids}
        assert used == {0, 1}
        assert all(o.usage.completion_tokens == 16 for o in outs)
        remote_calls = [i for i in range(4) if pool.program_stats(f"p{i}").replica_ids == (1,)]
        assert all(pool.program_stats(f"p{i}").service > 0 for i in remote_calls)

        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        results = await asyncio.gather(*(pool.generate(f"after {i}", program_id=f"a{i}",
                                                       max_tokens=8, **GREEDY)
                                         for i in range(4)))
        assert all(r.usage.completion_tokens == 8 for r in results)  # retried on replica 0
        await wait_until(lambda: not pool.replicas()[1].healthy, 30, "the dead replica left")
        later = await asyncio.gather(*(pool.generate(f"later {i}", program_id=f"b{i}",
                                                     max_tokens=4, **GREEDY) for i in range(4)))
        assert all(r.usage.completion_tokens == 4 for r in later)
        assert all(pool.program_stats(f"b{i}").replica_ids == (0,) for i in range(4))
