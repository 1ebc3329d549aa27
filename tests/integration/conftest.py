"""Real vLLM engines on the ``tiny`` model, one per policy, shared by the session."""

import pytest
import pytest_asyncio

from engine import AutellixEngine, EngineConfig

MiB = 1 << 20
#: Small limits keep the suite fast on 2 cores: 4 running calls, 256 MiB of KV cache.
TEST_ENGINE = dict(model="tiny", max_num_seqs=4, max_model_len=1024, kv_cache_bytes=256 * MiB)


class EnginePool:
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
    pool = EnginePool()
    yield pool
    await pool.aclose()


@pytest_asyncio.fixture(scope="session")
async def atlas(engines):
    return await engines.get("atlas")


def pytest_collection_modifyitems(items):
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.engine)
