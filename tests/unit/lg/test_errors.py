"""The chat model's errors are langchain-core's standard model errors and the engine's."""

import pytest
from langchain_core.exceptions import (
    ContextOverflowError,
    ModelAPIError,
    ModelConnectionError,
    ModelError,
    ModelInvalidRequestError,
)

from autellix_engine import (
    AutellixError,
    EngineNotRunningError,
    InvalidRequestError,
    PromptTooLongError,
    ReplicaError,
)
from autellix_lg.errors import (
    CallTimeoutError,
    ContextTooLongError,
    EngineFailedError,
    EngineUnavailableError,
    InvalidCallError,
    for_langchain,
)


@pytest.mark.parametrize(("engine_error", "langchain_type", "engine_type", "retryable"), [
    (InvalidRequestError("seed: expected int"), ModelInvalidRequestError,
     InvalidRequestError, False),
    (PromptTooLongError("3000 tokens"), ContextOverflowError, PromptTooLongError, False),
    (EngineNotRunningError("closed"), ModelConnectionError, EngineNotRunningError, True),
    (ReplicaError("replica 1 died"), ModelAPIError, ReplicaError, True),
])
def test_each_engine_error_has_a_langchain_counterpart(engine_error, langchain_type,
                                                       engine_type, retryable):
    converted = for_langchain(engine_error)
    assert isinstance(converted, langchain_type) and isinstance(converted, engine_type)
    assert converted.is_retryable is retryable and str(engine_error) in str(converted)
    assert for_langchain(converted) is converted  # already one


def test_the_chat_models_own_errors_are_both_kinds():
    for error, retryable in ((CallTimeoutError("slow"), True),
                             (EngineUnavailableError("down"), True),
                             (EngineFailedError("5xx"), True),
                             (InvalidCallError("bad"), False),
                             (ContextTooLongError("long"), False)):
        assert isinstance(error, ModelError) and isinstance(error, AutellixError)
        assert error.is_retryable is retryable
    assert isinstance(InvalidCallError("x"), ValueError)  # as InvalidRequestError always was
    assert for_langchain(KeyError("x")).__class__ is KeyError  # not ours: unchanged
