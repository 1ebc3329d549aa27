"""langchain-tests' standard integration suite against the embedded engine running the
default model (SmolLM2-135M-Instruct). Protocol tests all run; tests that a 135M model
cannot pass on meaning are marked xfail with the reason."""

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests

from autellix_lg import AutellixChatModel
from tests.chat_model_capabilities import AutellixCapabilities

#: One embedded engine for the whole suite (same configuration -> same engine).
ENGINE = {"max_num_seqs": 8, "max_model_len": 4096}


class TestAutellixChatModelIntegration(AutellixCapabilities, ChatModelIntegrationTests):
    @property
    def chat_model_class(self):
        return AutellixChatModel

    @property
    def chat_model_params(self):
        # A fixed seed: a call samples the same tokens whatever else the engine runs (a
        # 135M model can ramble inside a JSON string until max_tokens on some draws).
        return {"model": "smollm2", "engine_config": ENGINE, "seed": 0}

    # --- meaning, not protocol: a 135M model's limits -----------------------------------
    # Guided decoding guarantees a well-formed call of the right tool with arguments of
    # the right types; choosing the right *values* is up to the model.
    @pytest.mark.xfail(reason="135M model picks a wrong argument value (magic_function(3))")
    @pytest.mark.parametrize("model", [{}, {"output_version": "v1"}], indirect=True)
    def test_tool_calling(self, model) -> None:
        super().test_tool_calling(model)

    @pytest.mark.xfail(reason="135M model picks a wrong argument value (magic_function(3))")
    @pytest.mark.parametrize("model", [{}, {"output_version": "v1"}], indirect=True)
    async def test_tool_calling_async(self, model) -> None:
        await super().test_tool_calling_async(model)

    @pytest.mark.xfail(reason="json_mode only guarantees a JSON object; the 135M model does "
                              "not follow the prompt's keys (setup, punchline)")
    def test_json_mode(self, model) -> None:
        super().test_json_mode(model)

    @pytest.mark.xfail(reason="135M model does not copy the Japanese text into the argument")
    def test_unicode_tool_call_integration(self, model, *, tool_choice=None,
                                           force_tool_call=True) -> None:
        super().test_unicode_tool_call_integration(model, tool_choice=tool_choice,
                                                   force_tool_call=force_tool_call)

    @pytest.mark.xfail(reason="under tool_choice='auto' the 135M model may answer in text "
                              "instead of calling get_weather")
    @pytest.mark.parametrize("model", [{}, {"output_version": "v1"}], indirect=True)
    def test_agent_loop(self, model) -> None:
        super().test_agent_loop(model)
