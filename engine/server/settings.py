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
        max_body_bytes: larger request bodies get 413 (1 MiB: a long agent history
            is tens of kB).
        max_tokens_limit: the most ``max_tokens`` a request may ask for.
        max_programs_per_key: live programs one key may hold; more get 429 (programs
            end by ``DELETE /v1/programs/{id}`` or after the TTL).
        program_rate_per_s: programs one key may create per second (bursts up to the
            same number); more get 429.
        metrics_auth: require an API key on ``/metrics`` too (Prometheus scrapers send
            one with ``authorization``/``bearer_token``); off: open, as in ``vllm serve``.
        shutdown_timeout_s: on SIGTERM or SIGINT, how long calls in flight may still
            run before they are ended with an error (20 s: with uvicorn's 5 s to close
            connections, within Kubernetes' default 30 s termination grace period).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    api_keys: tuple[str, ...] = field(default_factory=tuple)
    max_body_bytes: int = 1 << 20
    max_tokens_limit: int = 4096
    max_programs_per_key: int = 10_000
    program_rate_per_s: float = 100.0
    metrics_auth: bool = False
    shutdown_timeout_s: float = 20.0
