"""Calls prepared by vLLM's own OpenAI layer, run on a remote replica.

vLLM's layer renders a request to token ids and validated ``SamplingParams`` and reads
back ``RequestOutput`` objects; a remote ``vllm serve`` speaks OpenAI JSON. The bridge
is the one the layer's own design allows: token ids in (``/v1/completions`` with the
prompt as ids and every sampling setting under vLLM's own name) and token ids out
(``return_token_ids``; logprobs with ``return_tokens_as_token_ids``), so rendering,
tool and reasoning parsing happen once, in the front end, exactly as in ``vllm serve``.
The replica's text is its detokenization of the same ids.

A setting this bridge cannot carry (``prompt_logprobs``, multimodal inputs, ...) is
refused with ``InvalidRequestError`` (a 400 naming it), never dropped.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

from autellix_engine.core.errors import InvalidRequestError

#: ``SamplingParams`` fields ``/v1/completions`` takes under the same name.
SAME_NAME = ("n", "presence_penalty", "frequency_penalty", "repetition_penalty",
             "temperature", "top_p", "top_k", "min_p", "seed", "stop", "stop_token_ids",
             "ignore_eos", "max_tokens", "min_tokens", "logprobs", "skip_special_tokens",
             "spaces_between_special_tokens", "include_stop_str_in_output",
             "allowed_token_ids", "bad_words", "thinking_token_budget")
#: Fields that describe the local handling of outputs, not the generation: the bridge
#: rebuilds the requested output kind itself.
LOCAL_ONLY = ("output_kind", "skip_clone", "output_text_buffer_length", "stream_interval",
              "detokenize")


def completion_body(params: Any, engine_input: Mapping[str, Any],
                    extra_args: dict[str, Any]) -> tuple[list[int], dict[str, Any]]:
    """The prompt ids and the ``/v1/completions`` body fields of a native call."""
    prompt = engine_input.get("prompt_token_ids")
    kind = engine_input.get("type", "token")
    if kind != "token" or not prompt:  # multimodal or encoder-decoder input
        raise InvalidRequestError(f"A remote replica takes token prompts only, not a "
                                  f"{kind!r} input")
    default = _defaults(type(params))
    body: dict[str, Any] = {}
    for name in type(params).__struct_fields__:  # SamplingParams is a msgspec struct
        if name.startswith("_") or name in LOCAL_ONLY:
            continue
        value, base = getattr(params, name), getattr(default, name)
        if name in SAME_NAME:
            if value != base:
                body[name] = list(value) if isinstance(value, tuple | set) else value
        elif name == "logit_bias" and value:
            body[name] = {str(k): v for k, v in value.items()}
        elif name == "structured_outputs" and value is not None:
            body[name] = {k: v for k, v in dataclasses.asdict(value).items()
                          if not k.startswith("_") and v not in (None, False)}
        elif name == "extra_args":
            continue  # below, with the program tag
        elif value != base:
            raise InvalidRequestError(f"{name} cannot be sent to a remote replica")
    if params.max_tokens is not None:
        body["max_tokens"] = params.max_tokens
    body["vllm_xargs"] = {**(params.extra_args or {}), **extra_args}
    if "cache_salt" in engine_input:
        body["cache_salt"] = engine_input["cache_salt"]
    return list(prompt), body


@functools.cache
def _defaults(kind: type) -> Any:
    """vLLM's default ``SamplingParams`` (unset fields stay the replica's)."""
    return kind()


class NativeOutputs:
    """Completion chunks of one call rebuilt as vLLM ``RequestOutput`` objects in the
    output kind the layer asked for (DELTA when streaming, FINAL_ONLY otherwise,
    CUMULATIVE for some endpoints). The output that finishes the request is held
    back until the usage arrives (it carries the cached-token count)."""

    def __init__(self, request_id: str, prompt_ids: list[int], params: Any,
                 tokenizer: Any) -> None:
        from vllm.sampling_params import RequestOutputKind

        self.request_id = request_id
        self.prompt_ids = prompt_ids
        self.n = params.n
        self.kind = params.output_kind
        self._kinds = RequestOutputKind
        self.tokenizer = tokenizer
        self.choices: dict[int, _Choice] = {}
        self._held: Any = None  # the finishing output, sent with the usage

    def add(self, index: int, text: str, ids: tuple[int, ...], logprobs: Any,
            finish_reason: str | None, stop_reason: int | str | None) -> Any | None:
        """A choice's chunk: the ``RequestOutput`` to pass on now (None: none yet)."""
        from vllm.outputs import CompletionOutput

        choice = self.choices.setdefault(index, _Choice())
        new_logprobs = self._logprobs(logprobs, ids)
        choice.add(text, ids, new_logprobs, finish_reason, stop_reason)
        if self.kind == self._kinds.FINAL_ONLY:
            return None
        if self.kind == self._kinds.DELTA:
            out = CompletionOutput(index, text, list(ids), None, new_logprobs,
                                   finish_reason=finish_reason, stop_reason=stop_reason)
        else:
            out = choice.cumulative(index)
        output = self._output([out], finished=False)
        if finish_reason is not None and self._all_finished():
            self._held = output
            return None
        return output

    def final(self, cached_tokens: int) -> Any:
        """The finishing ``RequestOutput`` (once the usage came)."""
        if self.kind == self._kinds.FINAL_ONLY or self._held is None:
            outputs = [c.cumulative(i) for i, c in sorted(self.choices.items())]
            output = self._output(outputs, finished=True)
        else:
            output = self._held
            output.finished = True
        output.num_cached_tokens = cached_tokens
        return output

    def _all_finished(self) -> bool:
        return len(self.choices) == self.n and all(
            c.finish_reason is not None for c in self.choices.values())

    def _output(self, outputs: list[Any], finished: bool) -> Any:
        from vllm.outputs import RequestOutput

        return RequestOutput(self.request_id, None, self.prompt_ids, None, outputs, finished)

    def _logprobs(self, logprobs: Any, ids: tuple[int, ...]) -> list[dict[int, Any]] | None:
        """Completion logprobs (tokens as ``token_id:<id>``) as vLLM's per-position
        ``{token id: Logprob}``, ranked as the replica ranked them."""
        from vllm.logprobs import Logprob

        positions = token_positions(logprobs, ids)
        if not positions:
            return None
        out = []
        for token_id, logprob, ranked in positions:
            rank = next((r for r, (t, _) in enumerate(ranked, 1) if t == token_id), None)
            position = {t: Logprob(lp, r, self._decoded(t))
                        for r, (t, lp) in enumerate(ranked, 1)}
            position[token_id] = Logprob(logprob, rank, self._decoded(token_id))
            out.append(position)
        return out

    def _decoded(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id])


class _Choice:
    """One choice's output so far."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.ids: list[int] = []
        self.logprobs: list[dict[int, Any]] | None = None
        self.finish_reason: str | None = None
        self.stop_reason: int | str | None = None

    def add(self, text: str, ids: tuple[int, ...], logprobs: list | None,
            finish_reason: str | None, stop_reason: int | str | None) -> None:
        self.text.append(text)
        self.ids.extend(ids)
        if logprobs is not None:
            self.logprobs = (self.logprobs or []) + logprobs
        self.finish_reason = finish_reason or self.finish_reason
        self.stop_reason = stop_reason if stop_reason is not None else self.stop_reason

    def cumulative(self, index: int) -> Any:
        from vllm.outputs import CompletionOutput

        return CompletionOutput(index, "".join(self.text), list(self.ids), None,
                                self.logprobs, finish_reason=self.finish_reason,
                                stop_reason=self.stop_reason)


def token_positions(logprobs: Any, ids: tuple[int, ...]
                    ) -> list[tuple[int, float, list[tuple[int, float]]]]:
    """A completion chunk's logprobs (tokens as ``token_id:<id>``, from
    ``return_tokens_as_token_ids``) per position: (token id, its logprob, the top
    (id, logprob) pairs, most likely first)."""
    if logprobs is None or not logprobs.token_logprobs:
        return []
    tops = logprobs.top_logprobs or [None] * len(ids)
    return [(token_id, logprob,
             sorted(((_token_id(t), lp) for t, lp in (top or {}).items()), key=lambda x: -x[1]))
            for token_id, logprob, top in zip(ids, logprobs.token_logprobs, tops, strict=False)]


def _token_id(token: str) -> int:
    return int(token.removeprefix("token_id:"))
