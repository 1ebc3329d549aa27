"""Model names: a Hugging Face id resolves in the hub cache as vLLM resolves it (offline
here), vLLM is given the id itself, and clients see it as the served name."""

import pytest
from huggingface_hub import constants

from autellix_engine.core.errors import ModelError
from autellix_engine.frontend.config import EngineConfig
from autellix_engine.frontend.models import resolve_model
from autellix_engine.frontend.vllm_args import engine_kwargs
from tests.hub_cache import COMMIT, HUB_ID, hub_cache


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    cache = hub_cache(tmp_path)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def test_a_hub_id_is_its_cached_snapshot_and_vllm_gets_the_id(offline_cache):
    model = resolve_model(HUB_ID)
    assert model.path.name == COMMIT and (model.path / "tokenizer.json").is_file()
    assert model.vllm_model == HUB_ID and model.served_name == HUB_ID
    kwargs = engine_kwargs(EngineConfig(model=HUB_ID), model, cpu=True)
    assert kwargs["model"] == HUB_ID and kwargs["served_model_name"] == [HUB_ID]


def test_names_that_resolve_nowhere_are_clear_errors(offline_cache):
    with pytest.raises(ModelError, match="'org/missing' is not in the hub cache"):
        resolve_model("org/missing")
    with pytest.raises(ModelError, match="is not in the hub cache"):
        resolve_model(HUB_ID, revision="v2")  # a revision the cache does not hold
    with pytest.raises(ModelError, match="Unknown model 'smolm2'"):
        resolve_model("smolm2")  # a typo of a short name is not a hub id


def test_a_local_folder_is_served_by_its_name(tmp_path):
    folder = resolve_model("tiny").path
    model = resolve_model(str(folder))
    assert model.hub_id is None and model.vllm_model == str(folder)
    assert model.served_name == folder.name
