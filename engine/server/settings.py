"""Server settings, with safe defaults."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ServerSettings:
    """How ``autellix serve`` listens and what it accepts.

    Attributes:
        host: bind address; loopback by default (expose deliberately).
        port: TCP port.
        api_keys: accepted bearer keys; empty = no authentication. Program ids are
            scoped per key, so one client cannot read, end or join another's programs.
        max_body_bytes: larger request bodies get 413.
        max_tokens_limit: the most ``max_tokens`` a request may ask for.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    api_keys: tuple[str, ...] = field(default_factory=tuple)
    max_body_bytes: int = 1 << 20
    max_tokens_limit: int = 4096
