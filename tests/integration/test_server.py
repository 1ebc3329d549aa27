"""The OpenAI-compatible server on loopback, over a real tiny engine."""

import asyncio
import json
import socket

import httpx
import openai
import pytest
import uvicorn

from autellix_engine.server import ServerSettings, build_app
from autellix_lg import AutellixChatModel

GREEDY = {"temperature": 0.0}
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}


async def start_server(engine, settings=None):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(build_app(engine, settings), log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    return server, task, f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
async def server(atlas):
    srv, task, url = await start_server(atlas)
    yield url
    srv.should_exit = True
    await task


@pytest.fixture
async def keyed_server(atlas):
    srv, task, url = await start_server(atlas, ServerSettings(api_keys=("key-a", "key-b"),
                                                              max_body_bytes=4096))
    yield url
    srv.should_exit = True
    await task


async def test_openai_client_chat_and_completions(server):
    client = openai.AsyncOpenAI(base_url=f"{server}/v1", api_key="unused")
    chat = await client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=8, **GREEDY)
    assert chat.choices[0].message.role == "assistant" and chat.usage.completion_tokens <= 8
    comp = await client.completions.create(model="tiny", prompt="Once", max_tokens=5, **GREEDY)
    assert comp.usage.completion_tokens <= 5 and isinstance(comp.choices[0].text, str)
    models = await client.models.list()
    assert [m.id for m in models.data] == ["tiny"]


async def test_streaming_with_usage(server):
    client = openai.AsyncOpenAI(base_url=f"{server}/v1", api_key="unused")
    stream = await client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "count"}], max_tokens=10,
        stream=True, stream_options={"include_usage": True}, extra_body={"ignore_eos": True},
        **GREEDY)
    text, usage, finish = [], None, None
    async for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            text.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert usage is not None and usage.completion_tokens >= 1 and finish in ("stop", "length")
    assert "".join(text)


async def test_program_ids_by_header_and_the_program_api(server):
    async with httpx.AsyncClient(base_url=server) as http:
        for _ in range(2):
            r = await http.post("/v1/chat/completions", headers={"X-Autellix-Program-Id": "p1"},
                                json={"messages": [{"role": "user", "content": "x"}],
                                      "max_tokens": 3})
            assert r.status_code == 200 and r.json()["program_id"] == "p1"
        stats = (await http.get("/v1/programs/p1")).json()
        assert stats["num_calls"] == 2 and stats["active_threads"] == []
        assert (await http.delete("/v1/programs/p1")).status_code == 200
        assert (await http.get("/v1/programs/p1")).status_code == 404
        assert (await http.get("/health")).json() == {"status": "ok"}
        assert "autellix_requests_total" in (await http.get("/metrics")).text


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        (b"{not json", 400, None),
        (json.dumps({"messages": "hi"}).encode(), 400, "messages"),
        (json.dumps({"messages": [{"role": "user", "content": "x"}], "max_tokens": -1}).encode(),
         400, "max_tokens"),
        (json.dumps({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"})
         .encode(), 400, "temperature"),
        (json.dumps({"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}).encode(),
         404, "model"),  # as vLLM and OpenAI: the model is not found
        (json.dumps({"messages": [{"role": "user", "content": "x"}], "temperature": -3})
         .encode(), 400, None),
        (json.dumps({"messages": [{"role": "user", "content": "x"}], "tools": [{"x": 1}]})
         .encode(), 400, "tools"),
        (json.dumps({"messages": [{"role": "user", "content": "x"}], "tools": [WEATHER],
                     "tool_choice": {"type": "function", "function": {"name": "nope"}}})
         .encode(), 400, "tool_choice"),
    ],
)
async def test_malformed_and_hostile_inputs_are_refused_cleanly(server, body, status, param):
    async with httpx.AsyncClient(base_url=server) as http:
        r = await http.post("/v1/chat/completions", content=body,
                            headers={"Content-Type": "application/json"})
        assert r.status_code == status
        err = r.json()["error"]
        assert err["type"] == "invalid_request_error" and err["message"]
        if param:
            assert err["param"] == param
        ok = await http.post("/v1/completions", json={"prompt": "still", "max_tokens": 2})
        assert ok.status_code == 200  # the server keeps serving


async def test_api_keys_scope_programs_and_limit_bodies(keyed_server):
    a = {"Authorization": "Bearer key-a"}
    b = {"Authorization": "Bearer key-b"}
    async with httpx.AsyncClient(base_url=keyed_server) as http:
        assert (await http.get("/v1/models")).status_code == 401
        r = await http.post("/v1/completions", headers={**a, "X-Autellix-Program-Id": "mine"},
                            json={"prompt": "x", "max_tokens": 2})
        assert r.status_code == 200
        assert (await http.get("/v1/programs/mine", headers=a)).status_code == 200
        assert (await http.get("/v1/programs/mine", headers=b)).status_code == 404
        assert (await http.delete("/v1/programs/mine", headers=b)).status_code == 404
        big = await http.post("/v1/completions", headers=a,
                              json={"prompt": "x" * 10_000, "max_tokens": 2})
        assert big.status_code == 413


async def test_a_disconnecting_streaming_client_has_its_request_aborted(server, atlas):
    async with httpx.AsyncClient(base_url=server) as http:
        async with http.stream("POST", "/v1/completions",
                               json={"prompt": "go", "max_tokens": 900, "stream": True,
                                     "ignore_eos": True}) as resp:
            seen = 0
            async for line in resp.aiter_lines():
                seen += line.startswith("data:")
                if seen >= 3:
                    break
    for _ in range(500):
        if atlas.replica(0).llm.get_num_unfinished_requests() == 0:
            break
        await asyncio.sleep(0.01)
    assert atlas.replica(0).llm.get_num_unfinished_requests() == 0


async def test_autellix_chat_model_against_the_server(server):
    llm = AutellixChatModel(model="tiny", base_url=server, max_tokens=6, temperature=0.0)
    msg = await llm.ainvoke("hello", config={"metadata": {"autellix_program_id": "remote"}})
    assert msg.usage_metadata["output_tokens"] >= 1
    assert msg.response_metadata["finish_reason"] in ("stop", "length")
    chunks = [c async for c in llm.astream("again")]
    assert sum(1 for c in chunks if c.usage_metadata) == 1


async def test_metrics_page_has_levels_replicas_latency_and_cache(server):
    async with httpx.AsyncClient(base_url=server) as http:
        r = await http.post("/v1/completions", headers={"X-Autellix-Program-Id": "m1"},
                            json={"prompt": "metrics please", "max_tokens": 4})
        assert r.status_code == 200
        assert (await http.delete("/v1/programs/m1")).status_code == 200
        page = (await http.get("/metrics")).text
    for series in ('autellix_active_calls_by_level{level="0"}',
                   'autellix_replica_inflight_calls{replica="0"}',
                   'autellix_replica_healthy{replica="0"} 1', "autellix_prefix_cache_hit_rate",
                   "autellix_preemptions_total", "autellix_swaps_out_total",
                   'autellix_call_latency_seconds_bucket{le="+Inf"}',
                   "autellix_program_latency_seconds_count 1.0"):
        assert series in page, series
    count = [line for line in page.splitlines()
             if line.startswith("autellix_call_latency_seconds_count")]
    assert float(count[0].split()[1]) >= 1


async def test_a_bounded_load_of_concurrent_clients_loses_nothing(server):
    """32 clients x 2 requests on loopback, streaming and not: every request answers
    once, completely, and nothing is left in flight."""
    async def client(k, http):
        answers = []
        for j in range(2):
            body = {"prompt": f"client {k} req {j}", "max_tokens": 6, "ignore_eos": True,
                    "stream": bool((k + j) % 2)}
            headers = {"X-Autellix-Program-Id": f"load-{k}"}
            if body["stream"]:
                async with http.stream("POST", "/v1/completions", json=body,
                                       headers=headers) as r:
                    assert r.status_code == 200
                    lines = [ln async for ln in r.aiter_lines() if ln.startswith("data:")]
                assert lines[-1] == "data: [DONE]"
                answers.append("stream")
            else:
                r = await http.post("/v1/completions", json=body, headers=headers)
                assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 6
                answers.append("json")
        return answers

    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=server, timeout=300, limits=limits) as http:
        results = await asyncio.wait_for(
            asyncio.gather(*(client(k, http) for k in range(32))), 300)
        assert sum(len(a) for a in results) == 64
        for k in range(32):
            stats = (await http.get(f"/v1/programs/load-{k}")).json()
            assert stats["num_calls"] == 2 and stats["active_threads"] == []
        page = (await http.get("/metrics")).text
    assert "autellix_active_calls 0" in page


@pytest.mark.parametrize("how", ["body", "x-session-id", "fairness-id", "ours-first"])
async def test_session_identities_name_the_program(server, atlas, how):
    """vLLM's and gateways' session identities make calls one program, beside ours."""
    client = openai.AsyncOpenAI(base_url=f"{server}/v1", api_key="unused")
    sid = f"sess-{how}"
    kwargs = {
        "body": dict(extra_body={"session_id": sid}),
        "x-session-id": dict(extra_headers={"X-Session-ID": sid}),
        "fairness-id": dict(extra_headers={"x-gateway-inference-fairness-id": sid}),
        "ours-first": dict(extra_headers={"X-Session-ID": "other",
                                          "X-Autellix-Program-Id": sid}),
    }[how]
    for _ in range(2):
        await client.completions.create(model="tiny", prompt="hi", max_tokens=3, **GREEDY,
                                        **kwargs)
    snap = atlas.program_stats(f"anon/{sid}")  # no API keys: the "anon" scope
    assert snap.tally.calls == 2 and snap.tally.completion_tokens == 6
    if how == "ours-first":
        assert atlas.program_stats("anon/other") is None


async def test_priority_from_the_body_or_vllms_header(server):
    async with httpx.AsyncClient(base_url=server) as http:
        body = {"model": "tiny", "prompt": "hi", "max_tokens": 2, **GREEDY}
        ok = await http.post("/v1/completions", json={**body, "priority": -3})
        assert ok.status_code == 200
        ok = await http.post("/v1/completions", json=body, headers={"X-Vllm-Priority": "2"})
        assert ok.status_code == 200
        for bad_body, headers in [({**body, "priority": "high"}, {}),
                                  ({**body, "priority": 1.5}, {}),
                                  ({**body, "priority": 2**40}, {}),
                                  (body, {"X-Vllm-Priority": "soon"}),
                                  ({**body, "session_id": 7}, {})]:
            bad = await http.post("/v1/completions", json=bad_body, headers=headers)
            assert bad.status_code == 400, (bad_body, headers, bad.text)
            assert "error" in bad.json()
