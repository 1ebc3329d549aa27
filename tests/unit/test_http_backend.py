"""The front end over an HTTP replica: how it reads vLLM's streams and meets faults.

The replica here is a small loopback server that answers as vLLM's OpenAI server does
(its SSE format, its ``{"error": ...}`` events inside a 200 stream, its status codes),
scripted per request, so each fault happens exactly when the test says. The same front
end against a real ``vllm serve`` is tested in ``tests/integration/test_remote.py`` and
``tests/integration/test_multihost.py``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from autellix_engine import AutellixEngine, EngineConfig, InvalidRequestError, ReplicaError
from autellix_engine.core.stats import CallStats
from autellix_engine.core.wire import STATS_KEY

STATS = CallStats(service=12.5, queue_wait_s=0.25, execution_s=0.5, decode_tokens=2,
                  preemptions=1, start_level=1, level=2, demotions=1)


def _event(body: dict) -> str:
    return f"data: {json.dumps(body)}\n\n"


def _token(text: str, token_id: int, finish: str | None = None) -> str:
    return _event({"id": "cmpl-1", "object": "text_completion", "created": 0, "model": "tiny",
                   "choices": [{"index": 0, "text": text, "token_ids": [token_id],
                                "finish_reason": finish}]})


def _usage(stats: CallStats | None = STATS) -> str:
    body = {"id": "cmpl-1", "object": "text_completion", "created": 0, "model": "tiny",
            "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2,
                                     "total_tokens": 5}}
    if stats is not None:
        body["kv_transfer_params"] = {STATS_KEY: stats.to_dict()}
    return _event(body)


class FakeReplica:
    """Answers /v1/completions from a script: one behaviour per request, in order."""

    def __init__(self) -> None:
        self.script: list[str] = []
        self.bodies: list[dict] = []
        self.healthy = True
        self.release = threading.Event()  # lets a "hang" request end (another thread)

    async def health(self, request):
        return JSONResponse({}, status_code=200 if self.healthy else 503)

    async def models(self, request):
        return JSONResponse({"object": "list", "data": [
            {"id": "tiny", "object": "model", "owned_by": "vllm", "max_model_len": 512}]})

    async def completions(self, request):
        self.bodies.append(await request.json())
        step = self.script.pop(0) if self.script else "ok"
        if step == "400":
            return JSONResponse({"error": {"message": "bad logit_bias", "type": "BadRequestError",
                                           "code": 400}}, status_code=400)
        if step == "503":
            return JSONResponse({"error": {"message": "overloaded", "code": 503}},
                                status_code=503)
        return StreamingResponse(self._stream(step), media_type="text/event-stream")

    async def _stream(self, step: str):
        if step == "error-event-400":
            yield _event({"error": {"message": "bad value", "type": "BadRequestError",
                                    "code": 400}})
            return
        if step == "error-event-500":
            yield _token("a", 10)
            yield _event({"error": {"message": "engine failed", "code": 500}})
            return
        yield _token("a", 10)
        if step == "drop":
            raise RuntimeError("the replica went away mid-stream")  # resets the stream
        if step == "hang":
            while not self.release.is_set():
                await asyncio.sleep(0.05)
            return
        yield _token("b", 11, finish="length")
        yield _usage(None if step == "no-stats" else STATS)
        yield "data: [DONE]\n\n"


@pytest.fixture(scope="module")
def replica():
    fake = FakeReplica()
    app = Starlette(routes=[Route("/health", fake.health), Route("/v1/models", fake.models),
                            Route("/v1/completions", fake.completions, methods=["POST"])])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        threading.Event().wait(0.05)
    yield fake, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
async def front(replica):
    fake, url = replica
    fake.script.clear()
    fake.healthy = True
    config = EngineConfig(model="tiny", remote_urls=(url,), health_interval_s=0.2,
                          retry_backoff_s=0.01, call_attempts=3)
    async with AutellixEngine(config) as eng:
        yield fake, eng


def _no_active_calls(eng: AutellixEngine) -> bool:
    return all(not p.active_threads for p in eng.programs())


async def test_a_streamed_call_brings_back_the_remote_schedulers_record(front):
    fake, eng = front
    out = await eng.generate([1, 2, 3], program_id="p", max_tokens=2, temperature=0.0)
    assert out.text == "ab" and out.token_ids == (10, 11) and out.finish_reason == "length"
    assert out.stats == STATS
    snap = eng.program_stats("p")
    assert (snap.service, snap.tally.preemptions, snap.tally.queue_wait_s) == (12.5, 1, 0.25)
    body = fake.bodies[-1]
    assert body["prompt"] == [1, 2, 3] and body["max_tokens"] == 2
    assert body["temperature"] == 0.0 and body["return_token_ids"] is True
    assert body["vllm_xargs"]["program_id"] == "p" and body["stream"] is True
    assert eng.max_model_len == 512


async def test_a_replica_without_our_plugin_gets_service_from_the_usage(front):
    fake, eng = front
    fake.script[:] = ["no-stats"]
    out = await eng.generate([1, 2, 3], max_tokens=2)
    weight = eng.config.policy_config.prefill_token_weight
    assert out.stats.service == pytest.approx(2 + weight * 3)


@pytest.mark.parametrize("step", ["400", "error-event-400"])
async def test_a_4xx_is_the_requests_fault_not_retried_and_the_replica_stays(front, step):
    fake, eng = front
    fake.script[:] = [step]
    sent = len(fake.bodies)
    with pytest.raises(InvalidRequestError, match="bad"):
        await eng.generate([1, 2, 3], program_id="bad", max_tokens=2)
    assert len(fake.bodies) == sent + 1, "not retried"
    assert [r.healthy for r in eng.replicas()] == [True] and eng.counters().retried_calls == 0
    assert _no_active_calls(eng)
    assert (await eng.generate([1, 2, 3], max_tokens=2)).text == "ab"


async def test_a_5xx_before_any_token_is_retried_with_backoff(front):
    fake, eng = front
    fake.script[:] = ["503", "503"]
    out = await eng.generate([1, 2, 3], program_id="retry", max_tokens=2)
    assert out.text == "ab" and eng.counters().retried_calls == 2
    ids = [b["vllm_xargs"]["program_id"] for b in fake.bodies[-3:]]
    assert ids == ["retry"] * 3
    assert eng.program_stats("retry").tally.calls == 1 and _no_active_calls(eng)


async def test_a_5xx_on_every_try_fails_the_call_cleanly(front):
    fake, eng = front
    fake.script[:] = ["503"] * 3
    with pytest.raises(ReplicaError, match="503|overloaded"):
        await eng.generate([1, 2, 3], program_id="down", max_tokens=2)
    assert _no_active_calls(eng) and eng.program_stats("down").num_aborted == 1


@pytest.mark.parametrize("step", ["drop", "error-event-500"])
async def test_a_fault_after_the_first_token_fails_the_call_and_is_counted(front, step):
    fake, eng = front
    fake.script[:] = [step]
    chunks = []
    with pytest.raises(ReplicaError):
        async for chunk in eng.stream([1, 2, 3], program_id="mid", max_tokens=2):
            chunks.append(chunk.text)
    assert chunks == ["a"], "the token before the fault reached the caller, once"
    assert eng.counters().failed_calls == 1 and eng.counters().retried_calls == 0
    assert _no_active_calls(eng)


async def test_a_replica_that_fails_its_health_check_ends_its_silent_calls(front):
    """A cut link leaves a stream open and silent: the health check ends it."""
    fake, eng = front
    fake.script[:] = ["hang"]
    fake.release.clear()
    call = asyncio.create_task(eng.generate([1, 2, 3], program_id="cut", max_tokens=2))
    while not fake.bodies or fake.bodies[-1]["vllm_xargs"]["program_id"] != "cut":
        await asyncio.sleep(0.05)
    fake.healthy = False
    with pytest.raises(ReplicaError, match="left the pool"):
        await asyncio.wait_for(call, 30)
    assert [r.healthy for r in eng.replicas()] == [False] and not eng.is_running
    fake.release.set()
    fake.healthy = True
    while not eng.replicas()[0].healthy:  # rejoins when healthy again
        await asyncio.sleep(0.05)
    assert eng.counters().rejoins == 1 and _no_active_calls(eng)
    assert (await eng.generate([1, 2, 3], max_tokens=2)).text == "ab"


def test_a_native_call_travels_under_vllms_own_names():
    """A call of vLLM's layer as a ``/v1/completions`` body: set fields by vLLM's
    names, guided decoding as ``structured_outputs``, the program tag beside the
    request's own ``vllm_xargs``; what the bridge cannot carry is refused."""
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    from autellix_engine.core.errors import InvalidRequestError
    from autellix_engine.frontend.backends.http_native import completion_body

    params = SamplingParams(max_tokens=7, temperature=0.5, stop=["x"], logit_bias={3: 1.0},
                            structured_outputs=StructuredOutputsParams(json={"type": "object"}),
                            extra_args={"mine": 1})
    prompt, body = completion_body(params, {"type": "token", "prompt_token_ids": [1, 2]},
                                   {"autellix": "tag"})
    assert prompt == [1, 2]
    assert body["max_tokens"] == 7 and body["temperature"] == 0.5 and body["stop"] == ["x"]
    assert body["logit_bias"] == {"3": 1.0}
    assert body["structured_outputs"] == {"json": {"type": "object"}}
    assert body["vllm_xargs"] == {"mine": 1, "autellix": "tag"}
    assert "top_p" not in body  # defaults stay the replica's
    with pytest.raises(InvalidRequestError, match="prompt_logprobs"):
        completion_body(SamplingParams(prompt_logprobs=1), {"prompt_token_ids": [1]}, {})
    with pytest.raises(InvalidRequestError, match="token prompts"):
        completion_body(params, {"type": "multimodal", "prompt_token_ids": [1]}, {})


@pytest.mark.parametrize("kind", ["DELTA", "CUMULATIVE", "FINAL_ONLY"])
def test_completion_chunks_become_vllms_request_outputs(kind):
    """Two choices streamed as completion chunks, rebuilt in the output kind vLLM's
    layer asked for; the output that finishes the request waits for the usage."""
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    from autellix_engine.frontend.backends.http_native import NativeOutputs

    class Decoder:
        def decode(self, ids):
            return f"<{ids[0]}>"

    params = SamplingParams(n=2, output_kind=getattr(RequestOutputKind, kind))
    outputs = NativeOutputs("r1", [5, 6], params, Decoder())
    chunks = [(0, "a", (1,), None, None), (1, "b", (2,), None, None),
              (0, "c", (3,), "stop", None), (1, "d", (4,), "length", None)]
    passed = [outputs.add(i, t, ids, None, f, s) for i, t, ids, f, s in chunks]
    final = outputs.final(cached_tokens=2)
    assert final.finished and final.num_cached_tokens == 2 and final.prompt_token_ids == [5, 6]
    if kind == "FINAL_ONLY":
        assert passed == [None] * 4
        assert [(o.index, o.text, o.token_ids, o.finish_reason) for o in final.outputs] == [
            (0, "ac", [1, 3], "stop"), (1, "bd", [2, 4], "length")]
        return
    assert passed[-1] is None  # held back: it finishes the request
    assert not any(p.finished for p in passed[:3])
    texts = [(p.outputs[0].index, p.outputs[0].text) for p in passed[:3]]
    last = final.outputs[0]
    if kind == "DELTA":
        assert texts == [(0, "a"), (1, "b"), (0, "c")]
        assert (last.index, last.text, last.finish_reason) == (1, "d", "length")
    else:
        assert texts == [(0, "a"), (1, "b"), (0, "ac")]
        assert (last.index, last.text, last.finish_reason) == (1, "bd", "length")
