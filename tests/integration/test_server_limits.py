"""The server's validation, limits, OpenAI conformance and metrics (a real engine,
in process through ``httpx.ASGITransport``)."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from openai.types import Completion, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from autellix_engine.server import ServerSettings, build_app

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


async def _client(engine, **settings) -> httpx.AsyncClient:
    app = await build_app(engine, ServerSettings(**settings))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://srv")


@pytest.fixture(scope="module")
async def http(atlas):
    async with await _client(atlas) as client:
        yield client


def _events(text: str) -> list[dict]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]


async def test_responses_parse_as_the_official_openai_types_in_strict_mode(http):
    chat = (await http.post("/v1/chat/completions", json=CHAT)).json()
    ChatCompletion.model_validate(chat, strict=True)
    text = (await http.post("/v1/completions",
                            json={"model": "tiny", "prompt": "hi", "max_tokens": 2})).json()
    Completion.model_validate(text, strict=True)
    for card in (await http.get("/v1/models")).json()["data"]:
        Model.model_validate(card, strict=True)
    r = await http.post("/v1/chat/completions",
                        json={**CHAT, "stream": True, "stream_options": {"include_usage": True}})
    events = _events(r.text)
    assert events and r.text.rstrip().endswith("data: [DONE]")
    for event in events:
        ChatCompletionChunk.model_validate(event, strict=True)


@pytest.mark.parametrize(("change", "status"), [
    ({"stream": "maybe"}, 400),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}, 400),
    ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, 400),
    ({"response_format": {"type": "json_schema", "json_schema": "x"}}, 400),
    ({"logprobs": True, "top_logprobs": 99}, 400),
    ({"seed": 2**64}, 400),
    ({"max_tokens": -1}, 400),
    ({"session_id": "p" * 300}, 400),
    ({"session_id": "bad\nid"}, 400),
    ({"logit_bias": {"x": 1}}, 400),
    ({"model": "gpt-4"}, 404),
])
async def test_bad_requests_get_a_4xx_and_create_no_program(http, atlas, change, status):
    body = {**CHAT, "session_id": "fresh-program", **change}
    r = await http.post("/v1/chat/completions", json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["message"]
    assert not atlas.is_program_running("anon/fresh-program")
    assert atlas.active_calls() == 0


async def test_a_session_refused_or_ended_takes_its_next_valid_call(http, atlas):
    """A refused first call leaves the session id free; a session whose program was
    ended through the program API starts afresh."""
    body = {**CHAT, "session_id": "again"}
    refused = await http.post("/v1/chat/completions", json={**body, "top_logprobs": 99,
                                                            "logprobs": True})
    assert refused.status_code == 400
    for _ in range(2):
        ok = await http.post("/v1/chat/completions", json=body)
        assert ok.status_code == 200, ok.text
        assert atlas.program_stats("anon/again").tally.calls == 1
        assert (await http.delete("/v1/programs/again")).status_code == 200


async def test_only_json_bodies_are_accepted(http):
    for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        r = await http.post("/v1/completions", content=b'{"model": "tiny", "prompt": "hi"}',
                            headers={"content-type": kind})
        assert r.status_code == 415, (kind, r.text)
    ok = await http.post("/v1/completions", content=b'{"model": "tiny", "prompt": "hi", '
                         b'"max_tokens": 1}',
                         headers={"content-type": "application/json; charset=utf-8"})
    assert ok.status_code == 200


async def test_logit_bias_is_applied(http, atlas):
    r = await http.post("/v1/completions", json={"model": "tiny", "prompt": "hi",
                                                 "max_tokens": 3, "logit_bias": {"42": 100}})
    assert r.status_code == 200
    out = await atlas.generate("hi", max_tokens=3, logit_bias={42: 100.0})
    assert out.token_ids == (42, 42, 42)
    assert r.json()["choices"][0]["text"] == out.text


async def test_live_programs_and_their_creation_rate_are_capped_per_key(atlas):
    async with await _client(atlas, api_keys=("k1", "k2"), max_programs_per_key=2) as http:
        k1 = {"authorization": "Bearer k1"}
        for name in ("a", "b"):
            assert (await http.put(f"/v1/programs/{name}", headers=k1)).status_code == 200
        r = await http.put("/v1/programs/c", headers=k1)
        assert r.status_code == 429 and r.json()["error"]["code"] == "too_many_programs"
        # Another key has its own budget; ending one frees a place.
        k2 = {"authorization": "Bearer k2"}
        assert (await http.put("/v1/programs/c", headers=k2)).status_code == 200
        assert (await http.delete("/v1/programs/a", headers=k1)).status_code == 200
        assert (await http.put("/v1/programs/c", headers=k1)).status_code == 200
        for name in ("b", "c"):
            await http.delete(f"/v1/programs/{name}", headers=k1)
        await http.delete("/v1/programs/c", headers=k2)
    async with await _client(atlas, api_keys=("k3",), program_rate_per_s=2) as http:
        k3 = {"authorization": "Bearer k3"}
        codes = [(await http.put(f"/v1/programs/rate-{i}", headers=k3)).status_code
                 for i in range(5)]
        assert codes[:2] == [200, 200] and 429 in codes
        for i in range(5):
            await http.delete(f"/v1/programs/rate-{i}", headers=k3)


async def test_metrics_can_require_a_key_and_include_vllms_own_series(atlas):
    async with await _client(atlas, api_keys=("k",), metrics_auth=True) as http:
        assert (await http.get("/autellix/metrics")).status_code == 401
        page = (await http.get("/autellix/metrics",
                               headers={"authorization": "Bearer k"})).text
    assert "autellix_programs" in page and "autellix_requests_total" in page
    # vLLM's own series, as its Grafana dashboards read them.
    for series in ("vllm:num_requests_running", "vllm:e2e_request_latency_seconds",
                   "vllm:prompt_tokens"):
        assert series in page, series


async def test_the_openai_client_sees_4xx_as_its_own_errors(http):
    """BadRequestError, not a server error: the official client does not retry it."""
    client = openai.AsyncOpenAI(base_url="http://srv/v1", api_key="x", http_client=http,
                                max_retries=0)
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model="tiny", messages=CHAT["messages"],
                                             max_tokens=-1)
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="gpt-9", messages=CHAT["messages"])


async def test_logprobs_from_the_engine_and_in_openai_shape(http, atlas):
    out = await atlas.generate("hi", max_tokens=3, logprobs=2, temperature=0.0)
    assert [lp.token_id for lp in out.logprobs] == list(out.token_ids)
    for lp in out.logprobs:  # greedy: the sampled token is the most likely one
        assert len(lp.top) == 2 and lp.top[0][0] == lp.token_id and lp.logprob <= 0
    chat = (await http.post("/v1/chat/completions", json={
        **CHAT, "max_tokens": 3, "logprobs": True, "top_logprobs": 2})).json()
    ChatCompletion.model_validate(chat, strict=True)
    content = chat["choices"][0]["logprobs"]["content"]
    assert len(content) == 3 and all(len(c["top_logprobs"]) == 2 for c in content)
    text = (await http.post("/v1/completions", json={
        "model": "tiny", "prompt": "hi", "max_tokens": 3, "logprobs": 1})).json()
    Completion.model_validate(text, strict=True)
    logprobs = text["choices"][0]["logprobs"]
    assert len(logprobs["tokens"]) == 3 and "".join(logprobs["tokens"]) == \
        text["choices"][0]["text"]
    r = await http.post("/v1/chat/completions", json={
        **CHAT, "max_tokens": 3, "logprobs": True, "stream": True})
    streamed = [c for chunk in _events(r.text) for choice in chunk["choices"]
                for c in (choice.get("logprobs") or {}).get("content") or []]
    assert len(streamed) == 3


async def test_n_choices_are_one_call_of_the_program(http, atlas):
    r = await http.post("/v1/chat/completions", json={**CHAT, "n": 3, "max_tokens": 2,
                                                      "ignore_eos": True},
                        headers={"x-autellix-program-id": "three"})
    body = r.json()
    ChatCompletion.model_validate(body, strict=True)
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert body["usage"]["completion_tokens"] == 6
    snap = atlas.program_stats("anon/three")
    assert snap.tally.calls == 1 and snap.tally.completion_tokens == 6
    assert not snap.active_threads
    atlas.end_program("anon/three")
    r = await http.post("/v1/completions", json={"model": "tiny", "prompt": "hi",
                                                 "max_tokens": 2, "n": 2, "stream": True,
                                                 "ignore_eos": True,
                                                 "stream_options": {"include_usage": True}})
    chunks = _events(r.text)
    finished = {c["index"] for chunk in chunks for c in chunk["choices"] if c["finish_reason"]}
    assert finished == {0, 1} and r.text.rstrip().endswith("data: [DONE]")
    assert chunks[-1]["usage"]["completion_tokens"] == 4
    # The request's own program (no program id given) ended with it.
    assert not [p for p in atlas.programs() if p.program_id.startswith("call-")]
    assert all(not p.active_threads for p in atlas.programs())


async def test_the_server_publishes_vllms_openapi_description(http):
    doc = (await http.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    assert {"/v1/chat/completions", "/v1/completions", "/v1/responses"} <= set(doc["paths"])
