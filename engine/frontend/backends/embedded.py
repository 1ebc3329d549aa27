"""The embedded back end: vLLM's ``AsyncLLM`` in this process, with our scheduler.

vLLM's engine core runs in a child process started with ``spawn``; that child does not
re-run the caller's ``__main__`` (``autellix_engine.frontend.main_guard``), so a plain script
needs no ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
from collections.abc import AsyncIterator
from typing import Any

from autellix_engine.core.errors import EngineNotRunningError, InvalidRequestError, ReplicaError
from autellix_engine.core.stats import CallStats, EngineGauges
from autellix_engine.core.wire import GAUGES_KEY, STATS_KEY
from autellix_engine.extension.liveness import Liveness
from autellix_engine.frontend.backends.base import BackendCall, Delta, Finish, NativeSampling
from autellix_engine.frontend.config import EngineConfig
from autellix_engine.frontend.models import resolve_model
from autellix_engine.frontend.results import TokenLogprob
from autellix_engine.frontend.vllm_setup import build_async_llm, is_engine_dead

logger = logging.getLogger(__name__)

#: Seconds vLLM waits for its engine core to exit before killing it. Its default (5 s)
#: is too short on a loaded 2-core machine: a core still stopping its worker was
#: force-killed, with vLLM's warning, at the end of the test suite.
STOP_GRACE_S = 20.0


class EmbeddedBackend:
    """One vLLM engine (``AsyncLLM``) running our scheduler."""

    name = "embedded"

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self._liveness = Liveness(config.health_timeout_s, config.stall_timeout_s)
        self._llm: Any = None
        self.gauges = EngineGauges()  # as last reported (step statistics, finished calls)
        self.tokenizer: Any = None  # once started
        self.max_model_len: int | None = None  # once started

    @property
    def llm(self) -> Any:
        """vLLM's ``AsyncLLM`` of this replica (None until started): for what the
        engine API does not cover, e.g. ``get_num_unfinished_requests()``."""
        return self._llm

    @property
    def is_running(self) -> bool:
        return self._llm is not None and not self._llm.errored

    async def start(self) -> None:
        if self._llm is not None:
            return
        model = await asyncio.to_thread(resolve_model, self.config.model,
                                      self.config.vllm_kwargs.get("revision"))
        self.gauges = EngineGauges()
        building = asyncio.ensure_future(asyncio.to_thread(
            build_async_llm, self.config, model, [_gauge_logger(self.gauges)]))
        try:
            self._llm = await asyncio.shield(building)
        except asyncio.CancelledError:
            # A stop while vLLM starts (SIGTERM, Ctrl-C): its thread cannot be
            # interrupted, and what it starts must not outlive us. Wait, then stop it.
            llm = await building
            llm.shutdown()
            llm.shutdown = _noop
            raise
        self.tokenizer = self._llm.get_tokenizer()
        self.max_model_len = self._llm.model_config.max_model_len

    async def aclose(self) -> None:
        if self._llm is None:
            return
        llm, self._llm = self._llm, None
        if not llm.errored:  # calls still waiting fail now, not never
            llm.output_processor.propagate_error(_shut_down_error())
        # On the loop thread: vLLM's output handler must not run while the engine
        # core goes down, or it logs a spurious EngineDeadError.
        llm.shutdown(timeout=STOP_GRACE_S)
        # AsyncLLM.__del__ calls shutdown() again, which fails noisily when it runs at
        # interpreter exit (module globals already gone): it is done already.
        llm.shutdown = _noop
        del llm
        gc.collect()

    async def check_health(self) -> bool:
        """Probe the engine core (``autellix_engine.extension.liveness``): False when it does
        not answer within ``health_timeout_s``; silent for ``stall_timeout_s``, it is
        declared dead, failing its calls."""
        if not self.is_running:
            return False
        return await self._liveness.check(self._llm)

    async def revive(self) -> bool:
        """Replace a dead engine with a fresh one; False when it does not start."""
        await self.aclose()
        try:
            await self.start()
        except Exception as e:  # noqa: BLE001 - the front end tries again later
            logger.warning("Restarting the embedded engine failed: %s", e)
            await self.aclose()
            return False
        return True

    async def run(self, call: BackendCall) -> AsyncIterator[Delta | Finish]:
        from vllm.exceptions import VLLMClientError

        if not self.is_running:
            raise ReplicaError("The embedded engine is not running")
        native = isinstance(call.sampling, NativeSampling)
        sampling = call.sampling.vllm_params(call.tag.to_extra_args())
        trace_headers = call.trace_context if self.config.otlp_traces_endpoint else None
        engine_input = (call.sampling.engine_input if isinstance(call.sampling, NativeSampling)
                        else {"prompt_token_ids": list(call.prompt_ids)})
        gen = self._llm.generate(engine_input, sampling, call.request_id,
                                 trace_headers=trace_headers, priority=call.priority)
        seen: dict[int, int] = {}  # per choice, tokens reported (CUMULATIVE repeats them)
        cumulative = native and sampling.output_kind == _cumulative()
        try:
            async for out in gen:
                ours = _take_our_params(out) if out.finished else {}
                completion = out.outputs[0]
                ids = _new_token_ids(out.outputs, seen, cumulative)
                if native:  # every output goes back: vLLM's layer reads them all
                    yield Delta(completion.text, ids, raw=out)
                elif completion.text or ids:
                    yield Delta(completion.text, ids,
                                _logprobs(completion, call.sampling.logprobs))
                if out.finished:
                    self.gauges.update(ours.get(GAUGES_KEY) or {})
                    # n > 1: the replica reports one choice's statistics; the front
                    # end estimates the call's service from the usage of all of them.
                    data = ours.get(STATS_KEY) if sampling.n == 1 else None
                    yield Finish(completion.finish_reason or "stop", completion.stop_reason,
                                 out.num_cached_tokens or 0,
                                 None if data is None else CallStats.from_dict(data))
        except VLLMClientError as e:
            raise InvalidRequestError(str(e)) from e
        except (InvalidRequestError, EngineNotRunningError, ReplicaError):
            raise
        except Exception as e:
            if is_engine_dead(e) or self._llm is None:
                raise ReplicaError(f"The embedded engine stopped: {e}") from e
            raise
        finally:
            await gen.aclose()


def _new_token_ids(outputs: Any, seen: dict[int, int], cumulative: bool) -> tuple[int, ...]:
    """The tokens an output adds, over all its choices (``n`` > 1 reports several)."""
    ids: list[int] = []
    for completion in outputs:
        done = seen.get(completion.index, 0) if cumulative else 0
        ids += completion.token_ids[done:]
        seen[completion.index] = len(completion.token_ids)
    return tuple(ids)


def _gauge_logger(gauges: EngineGauges) -> Any:
    """A vLLM stat-logger factory that keeps ``gauges`` current (beside vLLM's own
    loggers: its Prometheus series stay)."""
    from vllm.v1.metrics.loggers import StatLoggerBase

    class GaugeLogger(StatLoggerBase):
        def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
            pass

        def record(self, scheduler_stats: Any, iteration_stats: Any,
                   mm_cache_stats: Any = None, engine_idx: int = 0) -> None:
            if scheduler_stats is not None:
                gauges.running = scheduler_stats.num_running_reqs
                gauges.waiting = scheduler_stats.num_waiting_reqs
                gauges.kv_cache_usage = scheduler_stats.kv_cache_usage

        def log_engine_initialized(self) -> None:
            pass

    return GaugeLogger


def _logprobs(completion: Any, top: int | None) -> tuple[TokenLogprob, ...]:
    """vLLM's per-position ``{token id: Logprob}`` as ours (the sampled token's, and
    the ``top`` most likely)."""
    if top is None or not completion.logprobs:
        return ()
    out = []
    for token_id, position in zip(completion.token_ids, completion.logprobs, strict=False):
        ranked = sorted(((t, lp.logprob) for t, lp in position.items()), key=lambda x: -x[1])
        sampled = position.get(token_id)
        out.append(TokenLogprob(token_id, sampled.logprob if sampled else -math.inf,
                                tuple(ranked[:top])))
    return tuple(out)


def _take_our_params(out: Any) -> dict[str, Any]:
    """Our scheduler's statistics from a finished output's ``kv_transfer_params``,
    removed from it: they are the engine's wire data, not part of a response."""
    params = dict(out.kv_transfer_params or {})
    ours = {k: params.pop(k) for k in (STATS_KEY, GAUGES_KEY) if k in params}
    out.kv_transfer_params = params or None
    return ours


def _cumulative() -> Any:
    from vllm.sampling_params import RequestOutputKind

    return RequestOutputKind.CUMULATIVE


def _shut_down_error() -> BaseException:
    from vllm.v1.engine.exceptions import EngineDeadError

    return EngineDeadError("The engine was shut down")


def _noop(*args: Any, **kwargs: Any) -> None:
    return None
