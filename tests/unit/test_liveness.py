"""A silent engine core is unhealthy at once but declared dead only after the stall
timeout; an answer in between resets the count (``autellix_engine.extension.liveness``)."""

from __future__ import annotations

import asyncio

import pytest

from autellix_engine.extension import liveness
from autellix_engine.extension.liveness import Liveness


class FakeEngine:
    """The two things a probe touches on an ``AsyncLLM``: ``errored`` and a utility call."""

    def __init__(self) -> None:
        self.errored = False
        self.answers = True

    async def is_sleeping(self) -> bool:
        if not self.answers:
            await asyncio.Event().wait()  # a core that never answers
        return False


@pytest.fixture
def deaths(monkeypatch):
    declared: list[str] = []

    def declare(llm, reason):
        llm.errored = True
        declared.append(reason)

    monkeypatch.setattr(liveness, "declare_dead", declare)
    return declared


async def test_a_core_is_declared_dead_only_after_the_stall_timeout(deaths):
    now = [0.0]
    probe = Liveness(timeout_s=0.01, stall_s=30.0, clock=lambda: now[0])
    engine = FakeEngine()
    assert await probe.check(engine)
    engine.answers = False
    for t in (0.0, 10.0, 29.0):
        now[0] = t
        assert not await probe.check(engine)
    assert not deaths and not engine.errored  # slow is not dead
    now[0] = 30.0
    assert not await probe.check(engine)
    assert len(deaths) == 1 and engine.errored
    assert not await probe.check(engine)  # dead stays dead, declared once
    assert len(deaths) == 1


async def test_an_answer_resets_the_silence(deaths):
    now = [0.0]
    probe = Liveness(timeout_s=0.01, stall_s=30.0, clock=lambda: now[0])
    engine = FakeEngine()
    engine.answers = False
    assert not await probe.check(engine)
    now[0] = 25.0
    engine.answers = True
    assert await probe.check(engine)
    engine.answers = False
    now[0] = 50.0  # silent again from 50 s: 29 s later it is still only unhealthy
    assert not await probe.check(engine)
    now[0] = 79.0
    assert not await probe.check(engine)
    assert not deaths


def test_the_stall_timeout_is_never_shorter_than_a_probe():
    assert Liveness(timeout_s=10.0, stall_s=1.0).stall_s == 10.0


def test_serve_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv(liveness.TIMEOUT_ENV, "4")
    monkeypatch.setenv(liveness.STALL_ENV, "not a number")
    probe = Liveness.from_env()
    assert (probe.timeout_s, probe.stall_s) == (4.0, liveness.DEFAULT_STALL_S)
