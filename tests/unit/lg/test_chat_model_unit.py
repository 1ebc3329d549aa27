"""langchain-tests' standard unit suite, plus construction-time checks (no engine)."""

import pytest
from langchain_tests.unit_tests import ChatModelUnitTests

from autellix_lg import AutellixChatModel
from tests.chat_model_capabilities import AutellixCapabilities


class TestAutellixChatModelUnit(AutellixCapabilities, ChatModelUnitTests):
    @property
    def chat_model_class(self):
        return AutellixChatModel

    @property
    def chat_model_params(self):
        return {"model": "tiny"}


def test_construction_starts_nothing():
    model = AutellixChatModel(model="tiny")
    assert model._client is None


def test_invalid_tool_schema_is_a_clear_error():
    model = AutellixChatModel(model="tiny")
    with pytest.raises(ValueError, match="Invalid tool name"):
        model.bind_tools([{"type": "function", "function": {"name": "bad name!",
                                                             "parameters": {}}}])
    with pytest.raises(ValueError, match="type object"):
        model.bind_tools([{"type": "function", "function": {"name": "f",
                                                             "parameters": {"type": "array"}}}])
    with pytest.raises(ValueError, match="not a bound tool"):
        model.bind_tools([{"type": "function", "function": {"name": "f", "parameters": {}}}],
                         tool_choice="g")


def test_unknown_structured_output_method():
    with pytest.raises(ValueError, match="Unknown method"):
        AutellixChatModel(model="tiny").with_structured_output({"type": "object"}, method="xml")


def test_standard_params_name_the_provider():
    params = AutellixChatModel(model="tiny", temperature=0.5, max_tokens=9)._get_ls_params()
    assert params == {"ls_provider": "autellix", "ls_model_name": "tiny", "ls_model_type": "chat",
                      "ls_temperature": 0.5, "ls_max_tokens": 9}
