"""The server's programs over HTTP: identity, the program API, our metrics, aborts and
a bounded concurrent load (a real tiny engine, loopback, no API keys: the "anon"
scope)."""

import asyncio

import httpx
import openai
import pytest

from autellix_engine.server import ServerSettings, build_app
from autellix_lg import AutellixChatModel
from tests.integration.conftest import serving, wait_until

GREEDY = {"temperature": 0.0}


@pytest.fixture(scope="module")
async def server(atlas):
    app = await build_app(atlas, ServerSettings(program_rate_per_s=1e9))
    async with serving(app) as url:
        yield url


@pytest.fixture(scope="module")
async def keyed_server(atlas):
    app = await build_app(atlas, ServerSettings(api_keys=("key-a", "key-b"),
                                                max_body_bytes=4096))
    async with serving(app) as url:
        yield url


async def test_program_ids_by_header_and_the_program_api(server, atlas):
    async with httpx.AsyncClient(base_url=server) as http:
        for _ in range(2):
            r = await http.post("/v1/chat/completions", headers={"X-Autellix-Program-Id": "p1"},
                                json={"model": "tiny", "max_tokens": 3,
                                      "messages": [{"role": "user", "content": "x"}]})
            assert r.status_code == 200 and r.headers["x-autellix-policy"] == "atlas"
        stats = (await http.get("/v1/programs/p1")).json()
        assert stats["program_id"] == "p1"
        assert stats["num_calls"] == 2 and stats["active_threads"] == []
        assert stats["tokens_generated"] == atlas.program_stats("anon/p1").tally.completion_tokens
        assert (await http.delete("/v1/programs/p1")).status_code == 200
        assert (await http.get("/v1/programs/p1")).status_code == 404
        assert (await http.delete("/v1/programs/p1")).status_code == 404
        assert (await http.get("/v1/programs/bad%0Aid")).status_code == 400
        assert (await http.get("/health")).status_code == 200
        assert (await http.get("/health/ready")).json() == {"status": "ok"}
        assert (await http.get("/health/live")).json() == {"status": "ok"}


@pytest.mark.parametrize("how", ["body", "x-session-id", "xargs", "fairness-id", "ours-first"])
async def test_session_identities_name_the_program(server, atlas, how):
    """vLLM's and gateways' session identities make calls one program, beside ours."""
    client = openai.AsyncOpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)
    sid = f"sess-{how}"
    kwargs = {
        "body": dict(extra_body={"session_id": sid}),
        "x-session-id": dict(extra_headers={"X-Session-ID": sid}),
        "xargs": dict(extra_body={"vllm_xargs": {"session_id": sid}}),
        "fairness-id": dict(extra_headers={"x-gateway-inference-fairness-id": sid}),
        "ours-first": dict(extra_headers={"X-Session-ID": "other",
                                          "X-Autellix-Program-Id": sid}),
    }[how]
    for _ in range(2):
        await client.completions.create(model="tiny", prompt="hi", max_tokens=3, **GREEDY,
                                        **kwargs)
    snap = atlas.program_stats(f"anon/{sid}")
    assert snap.tally.calls == 2 and snap.tally.completion_tokens == 6
    if how == "ours-first":
        assert atlas.program_stats("anon/other") is None
    atlas.end_program(f"anon/{sid}")


async def test_api_keys_scope_programs_and_limit_bodies(keyed_server):
    a = {"Authorization": "Bearer key-a"}
    b = {"Authorization": "Bearer key-b"}
    async with httpx.AsyncClient(base_url=keyed_server) as http:
        assert (await http.get("/v1/models")).status_code == 401
        r = await http.post("/v1/completions", headers={**a, "X-Autellix-Program-Id": "mine"},
                            json={"model": "tiny", "prompt": "x", "max_tokens": 2})
        assert r.status_code == 200
        assert (await http.get("/v1/programs/mine", headers=a)).status_code == 200
        assert (await http.get("/v1/programs/mine", headers=b)).status_code == 404
        assert (await http.delete("/v1/programs/mine", headers=b)).status_code == 404
        assert (await http.get("/v1/programs/mine")).status_code == 401
        big = await http.post("/v1/completions", headers=a,
                              json={"model": "tiny", "prompt": "x" * 10_000, "max_tokens": 2})
        assert big.status_code == 413
        assert (await http.delete("/v1/programs/mine", headers=a)).status_code == 200


async def test_priority_from_the_body_or_vllms_header(server, atlas):
    async with httpx.AsyncClient(base_url=server) as http:
        body = {"model": "tiny", "prompt": "hi", "max_tokens": 2, **GREEDY}
        ok = await http.post("/v1/completions", json={**body, "priority": -3})
        assert ok.status_code == 200
        ok = await http.post("/v1/completions", json=body, headers={"X-Vllm-Priority": "2"})
        assert ok.status_code == 200
        for bad_body, headers in [({**body, "priority": "high"}, {}),
                                  ({**body, "priority": 1.5}, {}),
                                  ({**body, "priority": 2**40}, {}),
                                  ({**body, "session_id": 7}, {}),
                                  ({**body, "session_id": "s" * 300}, {})]:
            bad = await http.post("/v1/completions", json=bad_body, headers=headers)
            assert bad.status_code == 400, (bad_body, headers, bad.text)
            assert bad.json()["error"]["message"]
        assert atlas.active_calls() == 0


async def test_a_disconnecting_streaming_client_has_its_request_aborted(server, atlas):
    async with httpx.AsyncClient(base_url=server) as http:
        async with http.stream("POST", "/v1/completions",
                               json={"model": "tiny", "prompt": "go", "max_tokens": 900,
                                     "stream": True, "ignore_eos": True}) as resp:
            seen = 0
            async for line in resp.aiter_lines():
                seen += line.startswith("data:")
                if seen >= 3:
                    break
    await wait_until(lambda: atlas.replica(0).llm.get_num_unfinished_requests() == 0, 30,
                     "the engine request aborted")
    await wait_until(lambda: atlas.active_calls() == 0, 30, "no active call")


async def test_metrics_page_has_levels_replicas_latency_and_cache(server):
    async with httpx.AsyncClient(base_url=server) as http:
        r = await http.post("/v1/completions", headers={"X-Autellix-Program-Id": "m1"},
                            json={"model": "tiny", "prompt": "metrics please", "max_tokens": 4})
        assert r.status_code == 200
        assert (await http.delete("/v1/programs/m1")).status_code == 200
        page = (await http.get("/autellix/metrics")).text
        vllms = (await http.get("/metrics")).text  # vLLM's own page, as in vllm serve
    for series in ('autellix_active_calls_by_level{level="0"}',
                   'autellix_replica_inflight_calls{replica="0"}',
                   'autellix_replica_healthy{replica="0"} 1', "autellix_prefix_cache_hit_rate",
                   "autellix_preemptions_total", "autellix_swaps_out_total",
                   'autellix_call_latency_seconds_bucket{le="+Inf"}', "autellix_requests_total",
                   "autellix_program_latency_seconds_count", "vllm:num_requests_running"):
        assert series in page, series
    count = [line for line in page.splitlines()
             if line.startswith("autellix_call_latency_seconds_count")]
    assert float(count[0].split()[1]) >= 1
    assert "vllm:" in vllms


async def test_a_bounded_load_of_concurrent_clients_loses_nothing(server, atlas):
    """32 clients x 2 requests on loopback, streaming and not: every request answers
    once, completely, and nothing is left in flight."""
    async def client(k, http):
        answers = []
        for j in range(2):
            body = {"model": "tiny", "prompt": f"client {k} req {j}", "max_tokens": 6,
                    "ignore_eos": True, "stream": bool((k + j) % 2)}
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
            await http.delete(f"/v1/programs/load-{k}")
        page = (await http.get("/autellix/metrics")).text
    assert "autellix_active_calls 0.0" in page
    assert atlas.active_calls() == 0


async def test_autellix_chat_model_against_the_server(server):
    llm = AutellixChatModel(model="tiny", base_url=server, max_tokens=6, temperature=0.0)
    msg = await llm.ainvoke("hello", config={"metadata": {"autellix_program_id": "remote"}})
    assert msg.usage_metadata["output_tokens"] >= 1
    assert msg.response_metadata["finish_reason"] in ("stop", "length")
    chunks = [c async for c in llm.astream("again")]
    assert sum(1 for c in chunks if c.usage_metadata) == 1
