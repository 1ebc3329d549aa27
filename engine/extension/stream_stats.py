"""Per-call statistics on a stock ``vllm serve``'s streamed completions.

Our scheduler reports a finished call's record (``CallStats``) on the request's
``kv_transfer_params`` (``autellix_engine.core.wire``). vLLM's non-streaming
``/v1/completions`` responses carry that dict; its streams do not. The front end streams
(to forward tokens as they come and to retry only calls that returned none), so this
module, installed in vLLM's API-server process by our ``vllm.general_plugins`` entry
point, adds the dict to the stream's final usage chunk under the same name,
``kv_transfer_params`` (only our keys; KV-transfer data of other connectors stays out
of streams, as in stock vLLM).

vLLM has no hook for response fields, so this wraps one method,
``OpenAIServingCompletion.completion_stream_generator`` (vLLM 0.32.0), and only adds a
field: a vLLM whose method differs is left alone (the front end then estimates service
from the usage, as for a replica without our plugin).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from autellix_engine.core.wire import GAUGES_KEY, STATS_KEY

logger = logging.getLogger(__name__)

#: The stream generator's parameters we rely on (vLLM 0.32.0).
EXPECTED_PARAMS = ("self", "request", "engine_inputs", "result_generator", "request_id")


def install() -> bool:
    """Wrap vLLM's completion stream generator once; False when vLLM's differs."""
    import inspect

    try:
        from vllm.entrypoints.openai.completion.serving import OpenAIServingCompletion
    except ImportError:
        return False
    original = OpenAIServingCompletion.completion_stream_generator
    if getattr(original, "_autellix_stats", False):
        return True
    params = tuple(inspect.signature(original).parameters)
    if params[:len(EXPECTED_PARAMS)] != EXPECTED_PARAMS:
        logger.warning("vLLM's completion stream generator changed; streamed completions "
                       "will not carry Autellix call statistics")
        return False

    @functools.wraps(original)
    def completion_stream_generator(self: Any, request: Any, engine_inputs: Any,
                                    result_generator: AsyncIterator, *args: Any,
                                    **kwargs: Any) -> AsyncIterator[str]:
        if len(engine_inputs) != 1 or (request.n or 1) != 1:
            # Stats of one request only: a stream of several has no one final record.
            return original(self, request, engine_inputs, result_generator, *args, **kwargs)
        found: dict[str, Any] = {}
        events = original(self, request, engine_inputs, _watch(result_generator, found),
                          *args, **kwargs)
        return with_stats(events, found)

    completion_stream_generator._autellix_stats = True  # type: ignore[attr-defined]
    OpenAIServingCompletion.completion_stream_generator = completion_stream_generator
    return True


async def _watch(outputs: AsyncIterator, found: dict[str, Any]) -> AsyncIterator:
    """Pass vLLM's outputs through, keeping our statistics of the finished request."""
    async for item in outputs:
        output = item[1]
        params = getattr(output, "kv_transfer_params", None)
        if output.finished and isinstance(params, dict) and STATS_KEY in params:
            found.update({k: params[k] for k in (STATS_KEY, GAUGES_KEY) if k in params})
        yield item


async def with_stats(events: AsyncIterator[str], found: dict[str, Any]) -> AsyncIterator[str]:
    """SSE events with ``kv_transfer_params`` added to the final usage chunk."""
    async for event in events:
        if found and _is_final_usage(event):
            body = json.loads(event[len("data: "):])
            body["kv_transfer_params"] = dict(found)
            event = f"data: {json.dumps(body)}\n\n"
        yield event


def _is_final_usage(event: str) -> bool:
    # vLLM's final usage chunk is the one event with "choices": [] and a usage.
    return event.startswith("data: {") and '"choices":[]' in event and '"usage":' in event
