import pytest

from autellix_engine import EngineConfig
from autellix_engine.frontend.models import ModelError, resolve_model


def test_unknown_policy_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown scheduling policy: 'lifo'"):
        EngineConfig(policy="lifo")


def test_bad_limits_raise():
    with pytest.raises(ValueError):
        EngineConfig(max_num_seqs=0)
    with pytest.raises(ValueError):
        EngineConfig(max_model_len=4)


def test_unknown_model_name_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="Unknown model 'gpt-17'"):
        resolve_model("gpt-17")
    with pytest.raises(ModelError, match="config.json"):
        resolve_model(str(tmp_path))  # a folder, but not a model


def test_a_local_model_folder_is_used_as_is(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    model = resolve_model(str(tmp_path))
    assert model.path == tmp_path.resolve() and not model.dummy_weights
