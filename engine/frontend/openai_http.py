"""Reading the ``openai`` client's failures and usage: one rule for every HTTP hop.

Both HTTP hops use the ``openai`` client: the front end to a remote replica
(``backends.http``) and ``AutellixChatModel`` to a remote server
(``autellix_lg.clients``). What a failure means is decided here, once:

* a 4xx other than 408 and 429 (also as an error event inside a 200 stream) is the
  request's fault: never retried;
* a timeout, a failed connection, a 408/429/5xx or a broken stream is the far side's
  state: the hop may retry it.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import httpx
import openai

#: 4xx statuses that report the server's state (busy, slow), not the request's fault.
RETRYABLE_4XX = (408, 429)


class Failure(str, Enum):
    """What an HTTP failure means for the call that met it."""

    REQUEST = "request"  # the request is at fault (a 4xx): do not retry
    TIMEOUT = "timeout"  # no answer in time
    UNREACHABLE = "unreachable"  # no connection
    SERVER = "server"  # the far side failed (5xx, 408/429, a broken stream)


def status_of(error: BaseException) -> int | None:
    """The HTTP status of a failure (an error event's ``code`` inside a 200 stream)."""
    status = getattr(error, "status_code", None)
    if status is None and isinstance(error, openai.APIError) and isinstance(error.body, dict):
        status = error.body.get("code")
    return status if isinstance(status, int) else None


def classify(error: BaseException) -> Failure:
    if isinstance(error, openai.APITimeoutError | httpx.TimeoutException):
        return Failure.TIMEOUT
    if isinstance(error, openai.APIConnectionError | httpx.ConnectError):
        return Failure.UNREACHABLE
    status = status_of(error)
    if status is not None and 400 <= status < 500 and status not in RETRYABLE_4XX:
        return Failure.REQUEST
    return Failure.SERVER


def message_of(error: BaseException) -> str:
    return error.message if isinstance(error, openai.APIError) else str(error)


def usage_counts(usage: Any) -> tuple[int, int, int]:
    """(prompt, completion, cached prompt) tokens of an OpenAI ``usage`` (zeros if none)."""
    if usage is None:
        return 0, 0, 0
    details = getattr(usage, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) or 0
    return usage.prompt_tokens or 0, usage.completion_tokens or 0, cached
