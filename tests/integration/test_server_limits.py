"""The server's validation, limits, OpenAI conformance, metrics and spans (real engine)."""

from __future__ import annotations

import httpx
import openai
import pytest
from openai.types import Completion, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from autellix_engine.server import ServerSettings, build_app

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def _client(engine, **settings) -> httpx.AsyncClient:
    app = build_app(engine, ServerSettings(**settings))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://srv")


async def test_responses_parse_as_the_official_openai_types_in_strict_mode(atlas):
    async with _client(atlas) as http:
        chat = (await http.post("/v1/chat/completions", json=CHAT)).json()
        ChatCompletion.model_validate(chat, strict=True)
        text = (await http.post("/v1/completions",
                                json={"prompt": "hi", "max_tokens": 2})).json()
        Completion.model_validate(text, strict=True)
        for card in (await http.get("/v1/models")).json()["data"]:
            Model.model_validate(card, strict=True)
        r = await http.post("/v1/chat/completions",
                            json={**CHAT, "stream": True,
                                  "stream_options": {"include_usage": True}})
        events = [line[6:] for line in r.text.splitlines()
                  if line.startswith("data: ") and line != "data: [DONE]"]
        for event in events:
            import json

            ChatCompletionChunk.model_validate(json.loads(event), strict=True)


@pytest.mark.parametrize(("change", "status"), [
    ({"stream": "false"}, 400),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}, 400),
    ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, 400),
    ({"response_format": {"type": "json_schema", "json_schema": "x"}}, 400),
    ({"logprobs": True, "top_logprobs": 99}, 400),
    ({"n": 99}, 400),
    ({"seed": 2**64}, 400),
    ({"top_k": 10**12}, 400),
    ({"program_id": "p" * 300}, 400),
    ({"program_id": "bad\nid"}, 400),
    ({"logit_bias": {"x": 1}}, 400),
    ({"model": "gpt-4"}, 404),
])
async def test_bad_requests_get_a_4xx_and_create_no_program(atlas, change, status):
    async with _client(atlas) as http:
        body = {**CHAT, "program_id": "fresh-program", **change}
        r = await http.post("/v1/chat/completions", json=body)
        assert r.status_code == status, r.text
        assert r.json()["error"]["message"]
        assert not atlas.is_program_running("anon/fresh-program")


async def test_only_json_bodies_are_accepted(atlas):
    async with _client(atlas) as http:
        r = await http.post("/v1/completions", content=b'{"prompt": "hi"}',
                            headers={"content-type": "text/plain"})
        assert r.status_code == 415


async def test_logit_bias_is_applied(atlas):
    async with _client(atlas) as http:
        r = await http.post("/v1/completions", json={"prompt": "hi", "max_tokens": 3,
                                                     "logit_bias": {"42": 100}})
        assert r.status_code == 200
    out = await atlas.generate("hi", max_tokens=3, logit_bias={42: 100.0})
    assert out.token_ids == (42, 42, 42)


async def test_live_programs_and_their_creation_rate_are_capped_per_key(atlas):
    async with _client(atlas, api_keys=("k1", "k2"), max_programs_per_key=2) as http:
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
    async with _client(atlas, program_rate_per_s=2) as http:
        codes = [(await http.put(f"/v1/programs/rate-{i}")).status_code for i in range(5)]
        assert codes[:2] == [200, 200] and 429 in codes
        for i in range(5):
            await http.delete(f"/v1/programs/rate-{i}")


async def test_metrics_can_require_a_key_and_include_vllms_own_series(atlas):
    async with _client(atlas, api_keys=("k",), metrics_auth=True) as http:
        assert (await http.get("/metrics")).status_code == 401
        page = (await http.get("/metrics", headers={"authorization": "Bearer k"})).text
    assert "autellix_programs" in page and "autellix_requests_total" in page
    # vLLM's own series, as its Grafana dashboards read them.
    for series in ("vllm:num_requests_running", "vllm:e2e_request_latency_seconds",
                   "vllm:prompt_tokens"):
        assert series in page, series


async def test_a_request_is_a_server_span_in_the_callers_trace(atlas, span_exporter):
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    parent = "b7ad6b7169203331"
    async with _client(atlas) as http:
        r = await http.post("/v1/completions", json={"prompt": "hi", "max_tokens": 2},
                            headers={"traceparent": f"00-{trace_id}-{parent}-01",
                                     "x-autellix-program-id": "traced"})
        assert r.status_code == 200
    (span,) = [s for s in span_exporter.get_finished_spans()
               if s.name == "POST /v1/completions"
               and s.attributes.get("autellix.program.id") == "traced"]
    assert format(span.context.trace_id, "032x") == trace_id
    assert format(span.parent.span_id, "016x") == parent
    assert span.attributes["autellix.call.decode_tokens"] >= 1
    assert "autellix.queue.wait_s" in span.attributes


async def test_the_openai_client_sees_4xx_as_its_own_errors(atlas):
    """BadRequestError, not a server error: the official client does not retry it."""
    async with _client(atlas) as http:
        client = openai.AsyncOpenAI(base_url="http://srv/v1", api_key="x", http_client=http,
                                    max_retries=0)
        with pytest.raises(openai.BadRequestError):
            await client.chat.completions.create(model="tiny", messages=CHAT["messages"],
                                                 max_tokens=2, n=99)


async def test_logprobs_from_the_engine_and_in_openai_shape(atlas):
    out = await atlas.generate("hi", max_tokens=3, logprobs=2, temperature=0.0)
    assert [lp.token_id for lp in out.logprobs] == list(out.token_ids)
    for lp in out.logprobs:  # greedy: the sampled token is the most likely one
        assert len(lp.top) == 2 and lp.top[0][0] == lp.token_id and lp.logprob <= 0
    async with _client(atlas) as http:
        chat = (await http.post("/v1/chat/completions", json={
            **CHAT, "max_tokens": 3, "logprobs": True, "top_logprobs": 2})).json()
        ChatCompletion.model_validate(chat, strict=True)
        content = chat["choices"][0]["logprobs"]["content"]
        assert len(content) == 3 and all(len(c["top_logprobs"]) == 2 for c in content)
        text = (await http.post("/v1/completions", json={
            "prompt": "hi", "max_tokens": 3, "logprobs": 1})).json()
        Completion.model_validate(text, strict=True)
        logprobs = text["choices"][0]["logprobs"]
        assert len(logprobs["tokens"]) == 3 and "".join(logprobs["tokens"]) == \
            text["choices"][0]["text"]
        r = await http.post("/v1/chat/completions", json={
            **CHAT, "max_tokens": 3, "logprobs": True, "stream": True})
        import json

        chunks = [json.loads(line[6:]) for line in r.text.splitlines()
                  if line.startswith("data: {")]
        streamed = [c for chunk in chunks for choice in chunk["choices"]
                    for c in (choice.get("logprobs") or {}).get("content") or []]
        assert len(streamed) == 3
        bad = await http.post("/v1/chat/completions", json={**CHAT, "top_logprobs": 2})
        assert bad.status_code == 400


async def test_n_choices_run_as_parallel_threads_of_one_program(atlas):
    async with _client(atlas) as http:
        r = await http.post("/v1/chat/completions", json={**CHAT, "n": 3, "max_tokens": 2},
                            headers={"x-autellix-program-id": "three"})
        body = r.json()
        ChatCompletion.model_validate(body, strict=True)
        assert [c["index"] for c in body["choices"]] == [0, 1, 2]
        assert body["usage"]["completion_tokens"] == 6
        snap = atlas.program_stats("anon/three")
        assert snap.tally.calls == 3 and not snap.active_threads
        await http.delete("/v1/programs/three")
        r = await http.post("/v1/completions", json={"prompt": "hi", "max_tokens": 2, "n": 2,
                                                     "stream": True,
                                                     "stream_options": {"include_usage": True}})
        import json

        chunks = [json.loads(line[6:]) for line in r.text.splitlines()
                  if line.startswith("data: {")]
        finished = {c["index"] for chunk in chunks for c in chunk["choices"]
                    if c["finish_reason"]}
        assert finished == {0, 1} and r.text.rstrip().endswith("data: [DONE]")
        assert chunks[-1]["usage"]["completion_tokens"] == 4
        for chunk in chunks:  # openai types a completion chunk as a Completion, whose
            if all(c["finish_reason"] for c in chunk["choices"]):  # finish_reason is set
                Completion.model_validate(chunk, strict=True)
    # The request's own program (no program id given) ended with it.
    assert not [p for p in atlas.programs() if p.program_id.startswith("n/")]
    assert all(not p.active_threads for p in atlas.programs())


async def test_the_server_publishes_its_openapi_description(atlas):
    async with _client(atlas) as http:
        doc = (await http.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    assert {"/v1/chat/completions", "/v1/completions", "/v1/programs/{program_id}"} <= set(
        doc["paths"])
    chat = doc["components"]["schemas"]["ChatCompletionRequest"]["properties"]
    assert {"messages", "logprobs", "n", "program_id", "thread_id"} <= set(chat)
