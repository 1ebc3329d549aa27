"""A remote replica: a stock ``vllm serve`` running our scheduler, used over HTTP.

Start one with ``autellix replica`` (or the command
``autellix_engine.vllm_args.replica_command`` prints): it is vLLM's own OpenAI server
with ``--scheduler-cls autellix_engine.AutellixScheduler`` and our settings in
``--additional-config``. Program metadata rides in each request's
``vllm_xargs`` (the flat keys of ``autellix_engine.policy.wire``), which vLLM puts in
``SamplingParams.extra_args``, where our scheduler reads it.

:class:`RemoteReplica` has the engine API (it subclasses :class:`AutellixEngine` and
replaces only how a call runs), so an :class:`autellix_engine.pool.EnginePool` mixes
embedded and remote replicas. The front end tokenizes (it loads the model's tokenizer, as for
an embedded replica) and keeps the process table. vLLM's streaming responses do not
carry our per-call statistics, so a remote call's service is counted from its usage
(decode tokens plus ``prefill_token_weight`` times uncached prompt tokens: the
scheduler's own token unit).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from autellix_engine.api import AutellixEngine
from autellix_engine.config import EngineConfig
from autellix_engine.errors import EngineNotRunningError, InvalidRequestError
from autellix_engine.models import resolve_model
from autellix_engine.policy import ProcessTable
from autellix_engine.policy.wire import ProgramTag
from autellix_engine.results import CallResult, CallTimings, StreamChunk, Usage

#: SamplingParams fields sent as /v1/completions fields of the same name.
_FIELDS = (
    "temperature", "top_p", "top_k", "min_p", "seed", "stop", "stop_token_ids", "ignore_eos",
    "presence_penalty", "frequency_penalty", "repetition_penalty", "min_tokens",
    "logit_bias", "include_stop_str_in_output", "max_tokens",
)


class RemoteReplica(AutellixEngine):
    """A vLLM server running our scheduler, behind the engine API."""

    def __init__(self, base_url: str, config: EngineConfig | None = None, *,
                 table: ProcessTable | None = None, replica_id: int | None = None,
                 api_key: str | None = None, timeout_s: float = 600.0) -> None:
        super().__init__(config, table=table, replica_id=replica_id)
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout_s = timeout_s
        self._client: httpx.AsyncClient | None = None
        self._up = False

    # -- lifecycle --------------------------------------------------------------------
    async def start(self) -> RemoteReplica:
        if self._client is not None:
            return self
        model = await asyncio.to_thread(resolve_model, self.config.model)
        from transformers import AutoTokenizer

        self._tokenizer = await asyncio.to_thread(AutoTokenizer.from_pretrained, str(model.path))
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self._client = httpx.AsyncClient(
            base_url=self.base_url, headers=headers,
            # A busy vLLM API server can take seconds to accept (docs/deployment.md).
            timeout=httpx.Timeout(self.timeout_s, connect=30.0),
        )
        self._loop = asyncio.get_running_loop()
        if not await self.check_health():
            await self.aclose()
            raise EngineNotRunningError(f"Remote replica {self.base_url} is not answering")
        self._max_model_len = await self._served_max_model_len()
        self._gc_task = asyncio.create_task(self._collect_programs())
        return self

    async def aclose(self) -> None:
        self._closed = True
        self._up = False
        if self._gc_task is not None:
            self._gc_task.cancel()
            self._gc_task = None
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def _served_max_model_len(self) -> int | None:
        """The replica's context length, from vLLM's ``/v1/models`` model card."""
        assert self._client is not None
        try:
            response = await self._client.get("/v1/models", timeout=10.0)
            cards = response.json().get("data") or []
        except (httpx.HTTPError, ValueError, AttributeError):
            return None
        lengths = [c.get("max_model_len") for c in cards if isinstance(c, dict)]
        return next((n for n in lengths if isinstance(n, int)), None)

    async def check_health(self) -> bool:
        """Ask the server's ``/health``; remembers and returns the answer."""
        if self._client is None:
            return False
        try:
            response = await self._client.get("/health", timeout=5.0)
            self._up = response.status_code == 200
        except httpx.HTTPError:
            self._up = False
        return self._up

    @property
    def is_running(self) -> bool:
        return self._client is not None and self._up

    def _ensure_running(self) -> None:
        if self._client is None:
            raise EngineNotRunningError(f"Remote replica {self.base_url} is not started")

    # -- one call ---------------------------------------------------------------------
    def _body(self, prompt_ids: list[int], sampling: Any, priority: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.config.model, "prompt": prompt_ids, "stream": True,
            "priority": priority,
            "stream_options": {"include_usage": True}, "return_token_ids": True,
            "vllm_xargs": dict(sampling.extra_args or {}),
        }
        for name in _FIELDS:
            value = getattr(sampling, name, None)
            if value not in (None, [], {}):
                body[name] = value
        structured = sampling.structured_outputs
        if structured is not None and structured.json is not None:
            body["structured_outputs"] = {"json": structured.json}
        return body

    async def _run(self, prompt_ids: list[int], sampling: Any, call_id: str, tag: ProgramTag,
                   trace_headers: dict[str, str] | None,
                   priority: int) -> AsyncIterator[StreamChunk]:
        assert self._client is not None
        submitted = time.monotonic()
        headers = {"traceparent": tag.traceparent} if tag.traceparent else {}
        parser = _CompletionStream()
        try:
            async with self._client.stream("POST", "/v1/completions",
                                           json=self._body(prompt_ids, sampling, priority),
                                           headers=headers) as response:
                if response.status_code >= 400:
                    await _raise_for(response, self.base_url)
                async for line in response.aiter_lines():
                    for text, ids in parser.feed(line):
                        yield StreamChunk(text, ids)
        except httpx.HTTPError as e:
            self._up = False
            raise EngineNotRunningError(f"Remote replica {self.base_url} failed: {e!r}") from e
        if parser.finish is None:
            self._up = False
            raise EngineNotRunningError(f"Remote replica {self.base_url} ended the stream early")
        yield self._final(parser, prompt_ids, submitted, tag, call_id)

    def _final(self, parser: _CompletionStream, prompt_ids: list[int], submitted: float,
               tag: ProgramTag, call_id: str) -> StreamChunk:
        cached = parser.cached_tokens
        weight = self.config.policy_config.prefill_token_weight
        service = len(parser.token_ids) + weight * max(0, len(prompt_ids) - cached)
        now = time.monotonic()
        ttft = None if parser.first_token is None else parser.first_token - submitted
        timings = CallTimings(
            latency_s=now - submitted, time_to_first_token_s=ttft, queue_wait_s=0.0,
            execution_s=0.0, prefill_s=0.0, decode_s=0.0, service=service, wait=0.0,
            preemptions=0, start_level=0, level=0,
        )
        usage = Usage(len(prompt_ids), len(parser.token_ids), cached)
        result = CallResult("".join(parser.text), tuple(parser.token_ids), parser.finish,
                            parser.stop_reason, usage, timings, tag.program_id, tag.thread_id,
                            call_id)
        return StreamChunk("", (), result.finish_reason, result)


class _CompletionStream:
    """Incremental parser of vLLM's /v1/completions SSE stream (with token ids)."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.token_ids: list[int] = []
        self.finish: str | None = None
        self.stop_reason: Any = None
        self.cached_tokens = 0
        self.first_token: float | None = None

    def feed(self, line: str) -> list[tuple[str, tuple[int, ...]]]:
        if not line.startswith("data:"):
            return []
        data = line[5:].strip()
        if data == "[DONE]":
            return []
        event = json.loads(data)
        usage = event.get("usage") or {}
        details = usage.get("prompt_tokens_details") or {}
        self.cached_tokens = details.get("cached_tokens") or self.cached_tokens
        out = []
        for choice in event.get("choices") or []:
            text, ids = choice.get("text") or "", tuple(choice.get("token_ids") or ())
            if ids and self.first_token is None:
                self.first_token = time.monotonic()
            self.text.append(text)
            self.token_ids.extend(ids)
            self.finish = choice.get("finish_reason") or self.finish
            self.stop_reason = choice.get("stop_reason", self.stop_reason)
            if text or ids:
                out.append((text, ids))
        return out


async def _raise_for(response: httpx.Response, base_url: str) -> None:
    body = (await response.aread()).decode(errors="replace")
    try:
        message = json.loads(body).get("error", {}).get("message", body)
    except (ValueError, AttributeError):
        message = body
    if 400 <= response.status_code < 500:
        raise InvalidRequestError(f"Remote replica refused the call: {message}")
    raise EngineNotRunningError(f"Remote replica {base_url} answered {response.status_code}: "
                                f"{message}")
