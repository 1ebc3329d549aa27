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


class _ScriptedClient:
    """A client that returns fixed output pieces: what the chat model does with an
    envelope's text, independent of any engine."""

    model_name, policy, key = "tiny", "atlas", ("scripted",)

    def __init__(self, pieces):
        self.pieces = pieces

    def stream(self, request, timeout):
        from autellix_engine.core.stats import CallStats
        from autellix_engine.frontend.results import CallResult, StreamChunk, Usage

        for piece in self.pieces:
            yield StreamChunk(piece, (1,))
        text = "".join(self.pieces)
        result = CallResult(text, (1,) * len(self.pieces), "stop", None,
                            Usage(5, len(self.pieces), 0), CallStats(), 0.1, 0.01,
                            "p", "main", "c")
        yield StreamChunk("", (), "stop", result)

    def start_program(self, program_id):
        pass

    def end_program(self, program_id):
        pass


def _weather(city: str) -> str:
    """Weather of a city."""
    return city


@pytest.mark.parametrize("pieces, streamed, calls", [
    (['{"resp', 'onse": "Hel', 'lo, \\u00', 'e9 Ann', '"}'], ["Hel", "lo, ", "é Ann"], 0),
    (['{"name": "_weather", ', '"arguments": {"city": "Rome"}}'], [], 1),
])
def test_a_plain_answer_under_tool_choice_auto_streams(pieces, streamed, calls):
    model = AutellixChatModel(model="tiny")
    model._client = _ScriptedClient(pieces)
    chunks = list(model.bind_tools([_weather], tool_choice="auto").stream("hi"))
    texts = [c.content for c in chunks if c.content]
    assert texts == streamed  # as generated, the envelope's JSON never shown
    final = chunks[0]
    for c in chunks[1:]:
        final += c
    assert final.content == "".join(streamed) and len(final.tool_calls) == calls
