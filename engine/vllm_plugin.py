"""Our vLLM general plugin (entry point group ``vllm.general_plugins``).

vLLM calls :func:`register` in every process it starts once this package is installed.
It makes the swap connector known by name, so a stock ``vllm serve`` user writes
``--kv-transfer-config '{"kv_connector": "AutellixSwapConnector", "kv_role": "kv_both"}'``
without our module path. The scheduler needs no registration: ``--scheduler-cls
autellix_engine.AutellixScheduler`` (or ``...AutellixAsyncScheduler`` on GPUs) names it.
"""

from __future__ import annotations

from autellix_engine.vllm_args import SWAP_CONNECTOR, SWAP_CONNECTOR_MODULE


def register() -> None:
    """Register the swap connector with vLLM's connector factory (idempotent)."""
    from vllm.distributed.kv_transfer.kv_connector.factory import KVConnectorFactory

    try:
        KVConnectorFactory.register_connector(SWAP_CONNECTOR, SWAP_CONNECTOR_MODULE,
                                              SWAP_CONNECTOR)
    except ValueError:
        pass  # registered already (vLLM loads plugins once per process, tests call again)
