"""Our vLLM general plugin (entry point group ``vllm.general_plugins``).

vLLM calls :func:`register` in every process it starts once this package is installed.
It makes the swap connector known by name, so a stock ``vllm serve`` user writes
``--kv-transfer-config '{"kv_connector": "AutellixSwapConnector", "kv_role": "kv_both"}'``
without our module path. The scheduler needs no registration: ``--scheduler-cls
autellix_engine.AutellixScheduler`` (or ``...AutellixAsyncScheduler`` on GPUs) names it.
In ``vllm serve``'s API-server process it also adds our per-call statistics to streamed
completions (``autellix_engine.extension.stream_stats``) and makes ``/health`` probe the engine
core (``autellix_engine.extension.liveness``: a core that stopped answering gets 503, not 200).
"""

from __future__ import annotations

import sys

from autellix_engine.core.wire import SWAP_CONNECTOR, SWAP_CONNECTOR_MODULE

#: Imported by ``vllm serve`` before it loads plugins: marks its API-server process.
API_SERVER_MODULE = "vllm.entrypoints.launchers.api_server.entry"


def register() -> None:
    """Register the swap connector with vLLM's connector factory (idempotent); in an
    API-server process, add call statistics to streamed completions and a probe to
    the health check."""
    from vllm.distributed.kv_transfer.kv_connector.factory import KVConnectorFactory

    try:
        KVConnectorFactory.register_connector(SWAP_CONNECTOR, SWAP_CONNECTOR_MODULE,
                                              SWAP_CONNECTOR)
    except ValueError:
        pass  # registered already (vLLM loads plugins once per process, tests call again)
    if API_SERVER_MODULE in sys.modules:
        from autellix_engine.extension import liveness, stream_stats

        stream_stats.install()
        liveness.install_probe()
