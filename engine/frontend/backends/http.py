"""The HTTP back end: a stock ``vllm serve`` running our scheduler.

Start one with ``autellix replica`` (or the command
``autellix_engine.frontend.vllm_args.replica_command`` prints): vLLM's own OpenAI server with
``--scheduler-cls autellix_engine.AutellixScheduler`` and our settings in
``--additional-config``. A call goes to ``/v1/completions`` as prompt token ids (the
front end tokenizes and applies chat templates) with its program tag in
``vllm_xargs`` (vLLM puts it in ``SamplingParams.extra_args``, where our scheduler
reads it).

The client is the maintained ``openai`` one (SSE parsing, ``{"error": ...}`` events
inside a 200 stream, connection pooling). Its own retries are off: the front end
retries on *another* replica, and only calls that returned no token.

Per-call statistics: our vLLM plugin (``autellix_engine.extension.plugin``, loaded by
``vllm serve`` through its ``vllm.general_plugins`` entry point) adds the scheduler's
record to the final usage chunk as ``kv_transfer_params`` (the field vLLM's
non-streaming responses already carry). A replica without it (an older install) gets
its service estimated from the usage.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai

from autellix_engine.core.errors import EngineNotRunningError, InvalidRequestError, ReplicaError
from autellix_engine.core.stats import CallStats, EngineGauges
from autellix_engine.core.wire import GAUGES_KEY, STATS_KEY
from autellix_engine.frontend import openai_http
from autellix_engine.frontend.backends.base import BackendCall, Delta, Finish, NativeSampling
from autellix_engine.frontend.backends.http_native import (
    NativeOutputs,
    completion_body,
    token_positions,
)
from autellix_engine.frontend.config import EngineConfig
from autellix_engine.frontend.models import resolve_model
from autellix_engine.frontend.openai_http import Failure
from autellix_engine.frontend.results import TokenLogprob

#: Seconds a replica's ``/health`` may take beyond its own engine probe
#: (``health_timeout_s``); a link that is cut answers never.
HEALTH_MARGIN_S = 5.0
#: Seconds to open a connection: a busy vLLM API server can take seconds to accept
#: one on a small machine (docs/deployment.md).
CONNECT_TIMEOUT_S = 30.0
#: How often a streaming call looks whether its replica left the pool (a cut link
#: leaves the socket open and silent).
LEFT_POOL_POLL_S = 1.0


class HttpBackend:
    """A remote replica over HTTP."""

    def __init__(self, base_url: str, config: EngineConfig) -> None:
        self.name = base_url.rstrip("/")
        self.config = config
        self._http: httpx.AsyncClient | None = None
        self._client: openai.AsyncOpenAI | None = None
        self.tokenizer: Any = None  # once started
        self.max_model_len: int | None = None  # once started
        self.gauges = EngineGauges()  # ours, from finished calls (vLLM's: its /metrics)
        self._up = False

    @property
    def is_running(self) -> bool:
        return self._client is not None and self._up

    # -- lifecycle --------------------------------------------------------------------
    async def start(self) -> None:
        if self._client is not None:
            return
        revision = self.config.vllm_kwargs.get("revision")
        model = await asyncio.to_thread(resolve_model, self.config.model, revision)
        from transformers import AutoTokenizer

        # The tokenizer the replicas use (vLLM's --tokenizer, else the model's).
        tokenizer = self.config.vllm_kwargs.get("tokenizer") or str(model.path)
        self.tokenizer = await asyncio.to_thread(
            AutoTokenizer.from_pretrained, tokenizer,
            revision=self.config.vllm_kwargs.get("tokenizer_revision"))
        timeout = httpx.Timeout(self.config.remote_timeout_s, connect=CONNECT_TIMEOUT_S)
        # One connection pool for the OpenAI API and vLLM's /health.
        self._http = httpx.AsyncClient(timeout=timeout)
        self._client = openai.AsyncOpenAI(
            base_url=f"{self.name}/v1", api_key=self.config.remote_api_key or "EMPTY",
            max_retries=0, timeout=timeout, http_client=self._http,
        )
        if not await self.check_health():
            await self.aclose()
            raise EngineNotRunningError(f"Remote replica {self.name} is not answering")
        self.max_model_len = await self._served_max_model_len()

    async def aclose(self) -> None:
        self._up = False
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    async def check_health(self) -> bool:
        """vLLM's ``/health``: 200 while its engine runs."""
        if self._http is None:
            return False
        try:
            timeout = self.config.health_timeout_s + HEALTH_MARGIN_S
            response = await self._http.get(f"{self.name}/health", timeout=timeout)
            self._up = response.status_code == 200
        except httpx.HTTPError:
            self._up = False
        return self._up

    async def revive(self) -> bool:
        """A remote replica cannot be restarted from here: it rejoins when healthy."""
        return False

    async def _served_max_model_len(self) -> int | None:
        """The replica's context length, from vLLM's model card (``max_model_len``)."""
        assert self._client is not None
        try:
            page = await self._client.models.list()
        except openai.OpenAIError:
            return None
        lengths = [(card.model_extra or {}).get("max_model_len") for card in page.data]
        return next((n for n in lengths if isinstance(n, int)), None)

    # -- one call ---------------------------------------------------------------------
    async def run(self, call: BackendCall) -> AsyncIterator[Delta | Finish]:
        if self._client is None:
            raise ReplicaError(f"Remote replica {self.name} is not started")
        native = None
        if isinstance(call.sampling, NativeSampling):
            # vLLM's OpenAI layer prepared it: token ids in, RequestOutputs rebuilt from
            # the token ids that come back (``http_native``).
            prompt, body = completion_body(call.sampling.params, call.sampling.engine_input,
                                           call.tag.to_extra_args())
            native = NativeOutputs(call.request_id, prompt, call.sampling.params,
                                   self.tokenizer)
        else:
            prompt, body = list(call.prompt_ids), call.sampling.request_fields()
            body["vllm_xargs"] = call.tag.to_extra_args()
        body.update(return_token_ids=True, priority=call.priority)
        if body.get("logprobs") is not None:
            body["return_tokens_as_token_ids"] = True  # "token_id:<id>": ids, not text
        headers = {k: v for k, v in call.trace_context.items()
                   if k in ("traceparent", "tracestate")}
        headers["X-Request-Id"] = call.request_id
        try:
            stream = await self._client.completions.create(
                model=self.config.model, prompt=prompt, stream=True,
                stream_options={"include_usage": True}, extra_body=body,
                extra_headers=headers,
            )
        except openai.OpenAIError as e:
            raise self._error(e) from e
        try:
            async for event in self._events(stream, native):
                yield event
        finally:
            await stream.close()  # a cancelled call: vLLM aborts it on the disconnect

    async def _events(self, stream: openai.AsyncStream,
                      native: NativeOutputs | None) -> AsyncIterator[Delta | Finish]:
        finish: str | None = None
        stop_reason: int | str | None = None
        chunks = stream.__aiter__()
        while True:
            try:
                chunk = await self._next(chunks)
            except StopAsyncIteration:
                break
            except (openai.OpenAIError, httpx.HTTPError) as e:
                raise self._error(e) from e
            for choice in chunk.choices:
                ids = tuple((choice.model_extra or {}).get("token_ids") or ())
                stop = (choice.model_extra or {}).get("stop_reason")
                if native is not None:
                    raw = native.add(choice.index, choice.text or "", ids, choice.logprobs,
                                     choice.finish_reason, stop)
                    if raw is not None:
                        yield Delta(choice.text or "", ids, raw=raw)
                elif choice.text or ids:
                    yield Delta(choice.text or "", ids, _logprobs(choice.logprobs, ids))
                finish = choice.finish_reason or finish
                stop_reason = stop if stop is not None else stop_reason
            if chunk.usage is not None:
                if finish is None:
                    break
                cached = openai_http.usage_counts(chunk.usage)[2]
                if native is not None:
                    yield Delta("", (), raw=native.final(cached))
                params = _params(chunk.model_extra)
                self.gauges.update(params.get(GAUGES_KEY) or {})
                data = params.get(STATS_KEY)
                yield Finish(finish, stop_reason, cached,
                             CallStats.from_dict(data) if isinstance(data, dict) else None)
                return
        raise ReplicaError(f"Remote replica {self.name} ended the stream early")

    async def _next(self, chunks: AsyncIterator[Any]) -> Any:
        """The next chunk, or ``ReplicaError`` as soon as the replica left the pool."""
        pending = asyncio.ensure_future(chunks.__anext__())
        try:
            while True:
                done, _ = await asyncio.wait({pending}, timeout=LEFT_POOL_POLL_S)
                if done:
                    return pending.result()
                if not self._up:
                    raise ReplicaError(f"Remote replica {self.name} left the pool "
                                       "(its health check failed) during the call")
        finally:
            if not pending.done():
                pending.cancel()

    def _error(self, e: Exception) -> Exception:
        """Our error for an HTTP failure: the request's fault, or the replica's."""
        if openai_http.classify(e) is Failure.REQUEST:
            return InvalidRequestError(
                f"Remote replica refused the call: {openai_http.message_of(e)}")
        return ReplicaError(f"Remote replica {self.name} failed: {e!r}")


def _logprobs(logprobs: Any, ids: tuple[int, ...]) -> tuple[TokenLogprob, ...]:
    """vLLM's completion logprobs (tokens as ``token_id:<id>``) as ours."""
    return tuple(TokenLogprob(token_id, logprob, tuple(ranked))
                 for token_id, logprob, ranked in token_positions(logprobs, ids))


def _params(extra: dict[str, Any] | None) -> dict[str, Any]:
    """The final usage chunk's ``kv_transfer_params`` (our plugin's additions)."""
    params = (extra or {}).get("kv_transfer_params")
    return params if isinstance(params, dict) else {}
