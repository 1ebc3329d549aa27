"""A call's sampling settings: one record from the API to either back end.

The field names are vLLM's ``SamplingParams`` names, which are also the field names of
vLLM's ``/v1/completions`` body, so the embedded back end builds ``SamplingParams`` and
the HTTP back end builds a request body from the same record, with no second list of
keys. The front end validates once (:meth:`Sampling.from_params`), with vLLM's own
checks, before a call reaches any back end.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import msgspec

from autellix_engine.core.errors import InvalidRequestError

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
    #: guided decoding by an xgrammar structural tag (its JSON text): what vLLM's tool
    #: parsers set for strict tool calling in a model's native format.
    structural_tag: str | None = None

    @classmethod
    def from_params(cls, max_tokens: int | None = DEFAULT_MAX_TOKENS,
                    json_schema: dict | None = None, structural_tag: str | None = None,
                    **params: Any) -> Sampling:
        """Validate call arguments: each value must have its field's type (an ``int``
        field takes an int, never ``"123"`` or ``True``; a ``float`` field takes an int
        or a float), then vLLM's own value checks.

        Raises:
            InvalidRequestError: an unknown key, a value of the wrong type, or a bad
                value.
        """
        unknown = set(params) - set(SAMPLING_KEYS)
        if unknown:
            msg = f"Unknown sampling parameters: {sorted(unknown)} (valid: {list(SAMPLING_KEYS)})"
            raise InvalidRequestError(msg)
        if isinstance(params.get("stop"), str):
            params["stop"] = (params["stop"],)
        try:
            # Strict: no string-to-number or number-to-bool coercion. A value the engine
            # core cannot decode would kill its input thread after the call was
            # accepted; it must be refused here.
            sampling = msgspec.convert({"max_tokens": max_tokens, "json_schema": json_schema,
                                        "structural_tag": structural_tag, **params}, cls,
                                       strict=True)
        except msgspec.ValidationError as e:
            raise InvalidRequestError(f"Invalid sampling parameter: {e}") from None
        if sampling.max_tokens is not None and sampling.max_tokens < 1:
            raise InvalidRequestError(f"max_tokens must be a positive int, got {max_tokens!r}")
        for text in sampling.stop or ():
            check_text(text, "a stop string")
        for name in SAMPLING_KEYS:
            _check_number(name, getattr(sampling, name))
        if json_schema is not None:
            _check_json(json_schema)
        if json_schema is not None and structural_tag is not None:
            raise InvalidRequestError("json_schema and structural_tag exclude each other")
        if structural_tag is not None:
            check_text(structural_tag, "structural_tag")
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
        structured = None
        if self.json_schema is not None:
            structured = StructuredOutputsParams(json=self.json_schema)
        elif self.structural_tag is not None:
            structured = StructuredOutputsParams(structural_tag=self.structural_tag)
        try:
            params = SamplingParams(output_kind=RequestOutputKind.DELTA,
                                    structured_outputs=structured, extra_args=extra_args,
                                    **values)
        except (ValueError, TypeError, VLLMClientError) as e:
            raise InvalidRequestError(f"Invalid sampling parameters: {e}") from e
        check_wire(params)
        return params

    def request_fields(self) -> dict[str, Any]:
        """The settings as ``/v1/completions`` body fields (vLLM's names); unset omitted."""
        out: dict[str, Any] = {}
        for name, value in asdict(self).items():
            if value is None:
                continue
            if name == "json_schema":
                out["structured_outputs"] = {"json": value}
            elif name == "structural_tag":
                out["structured_outputs"] = {"structural_tag": value}
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


#: Longest program, thread or session id (gateways send UUIDs or short tenant names).
MAX_ID_LENGTH = 256


def check_id(value: Any, what: str) -> str:
    """A client-chosen id: a non-empty printable string of at most ``MAX_ID_LENGTH``."""
    if not isinstance(value, str) or not value:
        raise InvalidRequestError(f"{what} must be a non-empty string")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidRequestError(f"{what} may be at most {MAX_ID_LENGTH} characters")
    check_text(value, what)
    if not value.isprintable():
        raise InvalidRequestError(f"{what} must be printable text")
    return value


def check_wire(params: Any) -> None:
    """Refuse ``SamplingParams`` that the engine core's decoder would refuse.

    The engine core decodes each request with msgspec against vLLM's types on its
    input thread; a value of the wrong type raises there and ends the thread, and with
    it the engine (every later call hangs). This round trip through vLLM's own encoder
    and a decoder of the same type (about 6 us) turns that into an
    ``InvalidRequestError`` for the one call.
    """
    from vllm.v1.serial_utils import MsgpackDecoder, MsgpackEncoder

    global _WIRE
    if _WIRE is None:
        _WIRE = (MsgpackEncoder(), MsgpackDecoder(type(params)))
    encoder, decoder = _WIRE
    try:
        decoder.decode(encoder.encode(params))
    except (msgspec.ValidationError, msgspec.EncodeError, TypeError, ValueError) as e:
        raise InvalidRequestError(f"Invalid sampling parameters: {e}") from None


_WIRE: tuple[Any, Any] | None = None


def _check_json(schema: dict) -> None:
    """A JSON schema must be JSON (it travels to the grammar compiler as text)."""
    try:
        json.dumps(schema, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise InvalidRequestError(f"json_schema must be a JSON object: {e}") from None


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


#: Sampling keys a call accepts besides ``max_tokens`` and the guided-decoding ones.
SAMPLING_KEYS = tuple(f.name for f in fields(Sampling)
                      if f.name not in ("max_tokens", "json_schema", "structural_tag"))
