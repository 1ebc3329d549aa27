"""A stock ``vllm serve`` with our scheduler and nothing else of ours in the path: the
official ``openai`` client sends only vLLM's session id (``X-Session-ID`` header or
body ``session_id``). The server runs docs/deployment.md's command (with CPU settings
and our tuning in ``--additional-config``: ``session_overtake.stock_vllm_command``).

Judged by the engine's own count of the steps B waited (our scheduler's statistics on
vLLM's response), not by seconds or by what the client saw (vLLM's API server lags its
engine on a loaded 2-core machine): with session ids B's short call overtakes A's long
ones at once; without them B waits for one of A's calls to finish (the top queue's
quantum, 1024 tokens of service here, exceeds A's 300-token calls). The wall-clock
comparison is a benchmark: ``python benchmarks/session_overtake.py`` (docs/benchmarks.md).

The same server takes our tool envelope as a plugin (docs/server.md): the parser file,
``--tool-call-parser autellix_envelope`` and the template ``autellix envelope-template``
prints; the official client's tool calls work under ``tool_choice="auto"``.
"""

import json
import subprocess
import sys

import openai
import pytest
import pytest_asyncio

import autellix_engine.frontend.envelope_parser as envelope_parser
from autellix_workloads import session_overtake

RUNNING = 4  # = --max-num-seqs: A's long calls fill the batch
MODEL = "smollm2"  # tiny's fast steps flood vLLM's API server here (session_overtake)


@pytest_asyncio.fixture(scope="module")
async def stock_server(tmp_path_factory):
    template = tmp_path_factory.mktemp("envelope") / "template.jinja"
    template.write_text(subprocess.run(
        [sys.executable, "-m", "autellix_workloads.cli", "envelope-template", "--model", MODEL],
        check=True, capture_output=True, text=True).stdout)
    tools = ["--tool-parser-plugin", envelope_parser.__file__, "--tool-call-parser",
             "autellix_envelope", "--enable-auto-tool-choice", "--chat-template", str(template)]
    async with session_overtake.stock_vllm_server(MODEL, RUNNING, extra_flags=tools) as url:
        yield url


async def run_meeting_a(url: str, mode: str):
    """One round in which B reached the engine while A's calls ran. vLLM's API server
    may hand B to the engine late on a loaded machine; a round where B found a free slot
    (one of A's calls had ended) shows nothing and is run again (at most three rounds).
    B met a full batch if it waited, or if none of A's calls had ended before it did;
    without session ids only waiting tells (the client sees A's ends late, and a fresh
    CI run once saw B start at once after one of A's calls ended, 0 steps waited)."""
    for attempt in range(3):
        out = await session_overtake.run(url, MODEL, mode, running=RUNNING,
                                         tag=f"-{mode}-{attempt}")
        met_a = out.waited_steps > 0
        if mode != "none":
            met_a = met_a or out.longs_done_before_short == 0
        if met_a:
            return out
    pytest.fail(f"B never reached the engine before A's calls ended: {out}")


@pytest.mark.parametrize("mode", ["header", "body"])
async def test_a_fresh_session_overtakes_a_saturating_one(stock_server, mode):
    with_ids = await run_meeting_a(stock_server, mode)
    assert with_ids.start_level == 0  # B: a fresh program
    assert with_ids.longs_done_before_short == 0, with_ids  # B ended while A's calls ran
    assert with_ids.waited_steps <= 3, with_ids  # ... and it overtook them at once


async def test_without_session_ids_the_short_call_waits_for_a_slot(stock_server):
    """The same round with no session id: every call is a program of its own in the top
    queue, so B waits (FCFS in a level) until one of A's calls ends."""
    without = await run_meeting_a(stock_server, "none")
    assert without.start_level == 0
    assert without.waited_steps >= 1, without  # the batch was full of A's calls
    assert without.longs_done_before_short >= 1, without  # ... until one of them ended


async def test_a_clients_priority_reaches_our_scheduler_without_more_flags(stock_server):
    """No `--scheduling-policy priority` in the command: our scheduler switches vLLM to
    its priority queue, and vLLM's front end accepts a client's priority."""
    client = openai.AsyncOpenAI(base_url=f"{stock_server}/v1", api_key="unused",
                                timeout=openai.Timeout(600.0, connect=60.0))
    try:
        for priority in (-1, 3):
            out = await client.completions.create(
                model=MODEL, prompt="hi", max_tokens=4, temperature=0.0,
                extra_headers={"X-Session-ID": "prio"}, extra_body={"priority": priority})
            assert out.usage.completion_tokens == 4
    finally:
        await client.close()


def test_the_chatopenai_example_runs_against_this_server(stock_server):
    """``examples/chatopenai_vllm_serve.py``: ``ChatOpenAI`` with the thread's program
    as vLLM's session id, on this stock ``vllm serve``."""
    from tests.integration.test_examples import run_example

    out = run_example("chatopenai_vllm_serve.py", AUTELLIX_BASE_URL=stock_server,
                      AUTELLIX_MODEL=MODEL)
    assert out.count("bot: ") == 2, out


async def test_the_tool_envelope_as_a_plugin_of_stock_vllm(stock_server):
    """Auto tool choice on a model without a tool format: a call, then (given its
    result) a plain streamed answer."""
    tool = {"type": "function", "function": {
        "name": "get_weather", "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}}
    client = openai.AsyncOpenAI(base_url=f"{stock_server}/v1", api_key="unused",
                                timeout=openai.Timeout(600.0, connect=60.0))
    try:
        question = [{"role": "user", "content": "What is the weather in Paris? Use the tool."}]
        reply = await client.chat.completions.create(
            model=MODEL, messages=question, tools=[tool], max_tokens=64, temperature=0.0)
        call = reply.choices[0].message.tool_calls[0]
        assert (call.function.name, json.loads(call.function.arguments)) == (
            "get_weather", {"city": "Paris"})
        history = [*question, reply.choices[0].message.model_dump(exclude_none=True),
                   {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"}]
        stream = await client.chat.completions.create(
            model=MODEL, messages=history, tools=[tool], max_tokens=40, temperature=0.0,
            stream=True)
        texts = [c.choices[0].delta.content async for c in stream
                 if c.choices and c.choices[0].delta.content]
        assert len(texts) > 1 and not "".join(texts).lstrip().startswith("{"), texts
    finally:
        await client.close()
