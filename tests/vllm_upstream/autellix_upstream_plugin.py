"""pytest plugin: run vLLM's own scheduler tests against our scheduler classes.

Loaded with ``-p autellix_upstream_plugin`` by ``test_vllm_scheduler_tests.py`` in a
separate pytest process inside vLLM's unpacked tests (its folder on PYTHONPATH: the name
``tests`` is vLLM's there). With
``AUTELLIX_UPSTREAM_CLASSES=autellix`` it replaces vLLM's ``Scheduler`` and
``AsyncScheduler`` by ``AutellixScheduler`` and ``AutellixAsyncScheduler`` before the
tests import them; the tests' configs name no policy, so ours run ATLAS, as for
``vllm serve --scheduler-cls autellix_engine.AutellixScheduler``. With ``stock`` (the
baseline) nothing is replaced.
"""

from __future__ import annotations

import os


def pytest_configure(config) -> None:  # noqa: ARG001 - pytest hook signature
    if os.environ.get("AUTELLIX_UPSTREAM_CLASSES", "stock") != "autellix":
        return
    import vllm.v1.core.sched.async_scheduler as async_module
    import vllm.v1.core.sched.scheduler as sync_module

    from autellix_engine.extension.scheduler import AutellixAsyncScheduler, AutellixScheduler

    sync_module.Scheduler = AutellixScheduler
    async_module.AsyncScheduler = AutellixAsyncScheduler
