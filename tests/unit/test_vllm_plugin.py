"""The vLLM plugin: the entry point is installed, and it names our swap connector."""

from importlib.metadata import entry_points

from vllm.distributed.kv_transfer.kv_connector.factory import KVConnectorFactory

import autellix_engine
from autellix_engine.extension.plugin import register
from autellix_engine.extension.swap_connector import AutellixSwapConnector


def test_the_plugin_entry_point_is_installed():
    (ep,) = [e for e in entry_points(group="vllm.general_plugins") if e.name == "autellix"]
    assert ep.load() is register


def test_register_names_the_swap_connector_and_is_idempotent():
    register()
    register()
    cls = KVConnectorFactory.get_connector_class_by_name("AutellixSwapConnector")
    assert cls is AutellixSwapConnector


def test_the_scheduler_classes_have_short_stable_paths():
    from autellix_engine.extension.scheduler import AutellixAsyncScheduler, AutellixScheduler

    assert autellix_engine.AutellixScheduler is AutellixScheduler
    assert autellix_engine.AutellixAsyncScheduler is AutellixAsyncScheduler
