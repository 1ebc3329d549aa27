"""Real vLLM engines on the ``tiny`` model, one per policy, shared by the session."""

import contextlib

import pytest
import pytest_asyncio

from autellix_engine import AutellixEngine, EngineConfig

MiB = 1 << 20
#: Small limits keep the suite fast on 2 cores: 4 running calls, 256 MiB of KV cache.
TEST_ENGINE = dict(model="tiny", max_num_seqs=4, max_model_len=1024, kv_cache_bytes=256 * MiB)


async def wait_until(condition, timeout_s: float, what: str, poll_s: float = 0.2) -> None:
    """Wait for a state (never for a fixed time): fail with ``what`` after ``timeout_s``."""
    import asyncio

    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting: {what}"
        await asyncio.sleep(poll_s)


@contextlib.asynccontextmanager
async def serving(app):
    """``app`` (an ASGI app) served on a loopback port while the block runs: its URL."""
    import asyncio
    import socket

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        assert not task.done(), task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task


class PolicyEngines:
    """Starts an engine per policy on first use and keeps it for the session."""

    def __init__(self):
        self._engines: dict[str, AutellixEngine] = {}

    async def get(self, policy: str) -> AutellixEngine:
        if policy not in self._engines:
            eng = AutellixEngine(EngineConfig(policy=policy, **TEST_ENGINE))
            await eng.start()
            self._engines[policy] = eng
        return self._engines[policy]

    async def aclose(self):
        for eng in self._engines.values():
            await eng.aclose()
        self._engines.clear()


@pytest_asyncio.fixture(scope="session")
async def engines():
    pool = PolicyEngines()
    yield pool
    await pool.aclose()


@pytest_asyncio.fixture(scope="session")
async def atlas(engines):
    return await engines.get("atlas")


def pytest_collection_modifyitems(items):
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.engine)


class _Spans:
    """In-memory exporter plus a list of extra processors tests may add (OTLP)."""

    def __init__(self):
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        self.memory = InMemorySpanExporter()
        self.extra: list = []

    def get_finished_spans(self):
        return self.memory.get_finished_spans()

    def clear(self):
        self.memory.clear()


@pytest.fixture(scope="session")
def span_exporter():
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanProcessor

    spans = _Spans()

    class Fanout(SpanProcessor):
        def on_start(self, span, parent_context=None):
            for p in spans.extra:
                p.on_start(span, parent_context)

        def on_end(self, span):
            for p in spans.extra:
                p.on_end(span)

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(spans.memory))
    provider.add_span_processor(Fanout())
    return spans
