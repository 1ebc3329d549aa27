"""A call's sampling settings: one record from the API to either back end.

The field names are vLLM's ``SamplingParams`` names, which are also the field names of
vLLM's ``/v1/completions`` body, so the embedded back end builds ``SamplingParams`` and
the HTTP back end builds a request body from the same record, with no second list of
keys. The front end validates once (:meth:`Sampling.from_params`), with vLLM's own
checks, before a call reaches any back end.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from autellix_engine.errors import InvalidRequestError

#: Default ``max_tokens`` of a call (vLLM's own default, 16, is too short for chat).
DEFAULT_MAX_TOKENS = 256


@dataclass(frozen=True, slots=True)
class Sampling:
    """Sampling settings of one call; ``None`` leaves vLLM's default."""

    max_tokens: int | None = DEFAULT_MAX_TOKENS  # None: up to the context length
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] | None = None
    stop_token_ids: tuple[int, ...] | None = None
    ignore_eos: bool | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None
    min_tokens: int | None = None
    logit_bias: dict[int, float] | None = None
    include_stop_str_in_output: bool | None = None
    logprobs: int | None = None  # per token: its logprob and the top-k alternatives
    json_schema: dict[str, Any] | None = None  # guided decoding (structured outputs)

    @classmethod
    def from_params(cls, max_tokens: int | None = DEFAULT_MAX_TOKENS,
                    json_schema: dict | None = None, **params: Any) -> Sampling:
        """Validate call arguments (vLLM's own value checks included).

        Raises:
            InvalidRequestError: an unknown key or a bad value.
        """
        unknown = set(params) - set(SAMPLING_KEYS)
        if unknown:
            msg = f"Unknown sampling parameters: {sorted(unknown)} (valid: {list(SAMPLING_KEYS)})"
            raise InvalidRequestError(msg)
        if max_tokens is not None and (isinstance(max_tokens, bool) or
                                       not isinstance(max_tokens, int) or max_tokens < 1):
            raise InvalidRequestError(f"max_tokens must be a positive int, got {max_tokens!r}")
        if json_schema is not None and not isinstance(json_schema, dict):
            raise InvalidRequestError("json_schema must be a dict (a JSON schema)")
        for key in ("stop", "stop_token_ids"):
            value = params.get(key)
            if isinstance(value, str):
                params[key] = (value,)
            elif isinstance(value, list | tuple):
                params[key] = tuple(value)
        for text in params.get("stop") or ():
            if isinstance(text, str):
                check_text(text, "a stop string")
        for key, value in params.items():
            _check_number(key, value)
        sampling = cls(max_tokens=max_tokens, json_schema=json_schema, **params)
        sampling.vllm_params()  # vLLM's checks (ranges, types), raised as ours
        return sampling

    def with_max_tokens(self, max_tokens: int | None) -> Sampling:
        return replace(self, max_tokens=max_tokens)

    def vllm_params(self, extra_args: dict[str, Any] | None = None):
        """vLLM's ``SamplingParams`` (streamed as deltas) for the embedded back end."""
        from vllm import SamplingParams
        from vllm.exceptions import VLLMClientError
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

        values = {k: v for k, v in self.request_fields().items() if k != "structured_outputs"}
        structured = None if self.json_schema is None else StructuredOutputsParams(
            json=self.json_schema)
        try:
            return SamplingParams(output_kind=RequestOutputKind.DELTA,
                                  structured_outputs=structured, extra_args=extra_args,
                                  **values)
        except (ValueError, TypeError, VLLMClientError) as e:
            raise InvalidRequestError(f"Invalid sampling parameters: {e}") from e

    def request_fields(self) -> dict[str, Any]:
        """The settings as ``/v1/completions`` body fields (vLLM's names); unset omitted."""
        out: dict[str, Any] = {}
        for name, value in asdict(self).items():
            if value is None:
                continue
            if name == "json_schema":
                out["structured_outputs"] = {"json": value}
            else:
                out[name] = list(value) if isinstance(value, tuple) else value
        if self.max_tokens is None:
            out.pop("max_tokens", None)
        return out


def check_text(text: str, what: str) -> None:
    """Text the engine can carry: encodable as UTF-8 (a lone surrogate is not; vLLM's
    transport to its engine core would fail after accepting the call)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequestError(f"{what} is not valid Unicode (a lone surrogate)") from None


def _check_number(key: str, value: Any) -> None:
    """Numbers the engine core can carry: finite floats; 64-bit seeds, 32-bit other
    integers (vLLM checks signs and ranges, not sizes; a huge ``top_k`` fails inside
    the engine core, after the request was accepted)."""
    values = value if isinstance(value, list | tuple) else [value]
    for v in values:
        if isinstance(v, float) and not math.isfinite(v):
            raise InvalidRequestError(f"{key} must be a finite number, got {v!r}")
        if isinstance(v, int) and not isinstance(v, bool):
            bits = 63 if key == "seed" else 31
            if not -(2**bits) <= v < 2**bits:
                raise InvalidRequestError(f"{key} must fit in {bits + 1} bits, got {v}")


#: Sampling keys a call accepts besides ``max_tokens`` and ``json_schema``.
SAMPLING_KEYS = tuple(f.name for f in fields(Sampling)
                      if f.name not in ("max_tokens", "json_schema"))
