"""Request bodies and ids that the server can carry all the way to the engine (pure).

A JSON document can be valid and still break something downstream: nesting deep
enough to exhaust Python's recursion, ``NaN`` and ``Infinity`` (Python's ``json``
accepts them), integers beyond 64 bits (the engine core's msgpack transport and
xgrammar refuse them), and lone UTF-16 surrogates (no tokenizer or transport can
encode them). :func:`load_json` rejects all four before anything else looks at the
body; :func:`check_id` bounds the ids a client may name.
"""

from __future__ import annotations

import json
from typing import Any

from autellix_engine.core.errors import InvalidRequestError
from autellix_engine.frontend import sampling
from autellix_engine.server.errors import RequestError

#: Deepest nesting of arrays and objects in a body (a tool's JSON schema needs a few
#: levels; vLLM's own server has no bound and fails at Python's recursion limit).
MAX_DEPTH = 64
#: Longest program, thread or session id (gateways send UUIDs or short tenant names).
MAX_ID_LENGTH = 256
INT64 = (-(2**63), 2**63 - 1)


def load_json(raw: bytes, what: str = "The request body") -> Any:
    """Parse JSON that every part of the engine can carry, or raise ``RequestError``."""
    try:
        value = json.loads(raw, parse_constant=_no_constant)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RequestError(f"{what} is not valid JSON: {e}") from None
    except RecursionError:
        raise RequestError(f"{what} is nested too deeply") from None
    _check(value, 0, what)
    return value


def _no_constant(name: str) -> Any:
    raise RequestError(f"{name} is not a JSON number")


def _check(value: Any, depth: int, what: str) -> None:
    # Iterative over siblings, recursive over depth (bounded by MAX_DEPTH).
    if depth > MAX_DEPTH:
        raise RequestError(f"{what} is nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, str):
        check_text(value, what)
    elif isinstance(value, bool):
        return
    elif isinstance(value, int):
        if not INT64[0] <= value <= INT64[1]:
            raise RequestError(f"{what} has an integer beyond 64 bits")
    elif isinstance(value, list):
        for item in value:
            _check(item, depth + 1, what)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(key, what)
            _check(item, depth + 1, what)


def check_text(text: str, what: str = "a string") -> None:
    """Text must be encodable as UTF-8 (no lone surrogates)."""
    try:
        sampling.check_text(text, what)
    except InvalidRequestError as e:
        raise RequestError(str(e)) from None


def check_id(value: Any, param: str) -> str:
    """A client-chosen id: a non-empty printable string of at most ``MAX_ID_LENGTH``."""
    if not isinstance(value, str) or not value:
        raise RequestError(f"{param} must be a non-empty string", param=param)
    if len(value) > MAX_ID_LENGTH:
        raise RequestError(f"{param} may be at most {MAX_ID_LENGTH} characters", param=param)
    check_text(value, param)
    if not value.isprintable():
        raise RequestError(f"{param} must be printable text", param=param)
    return value
