"""What the server adds to vLLM's OpenAI layer: programs, health, our metrics.

- the program API, ``PUT|DELETE|GET /v1/programs/{id}`` (start, end, read a program);
- ``/health/ready`` (readiness: a replica can run calls and the server is not shutting
  down) and ``/health/live`` (liveness: 503 means restart this process);
- ``/autellix/metrics`` (our series, then vLLM's: ``metrics``);
- the per-key bounds on programs: a live-program cap and a creation rate (429 beyond),
  and the key scope of program ids (one key cannot read, end or join another's).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from autellix_engine.core.errors import InvalidRequestError, UnknownProgramError
from autellix_engine.frontend import sampling
from autellix_engine.frontend.engine import AutellixEngine
from autellix_engine.server import metrics
from autellix_engine.server.errors import RequestError
from autellix_engine.server.settings import ServerSettings

PROGRAM_HEADER = "x-autellix-program-id"
THREAD_HEADER = "x-autellix-thread-id"
#: llm-d's fairness id: gateways forward it per tenant or session.
GATEWAY_HEADER = "x-gateway-inference-fairness-id"


def check_id(value: Any, param: str) -> str:
    """A client-chosen id (``sampling.check_id``), or a 400 that names ``param``."""
    try:
        return sampling.check_id(value, param)
    except InvalidRequestError as e:
        raise RequestError(str(e), param=param) from None


class _TokenBucket:
    """At most ``rate`` events per second, in bursts of up to ``rate``."""

    def __init__(self, rate: float) -> None:
        self.rate, self.tokens, self.last = rate, rate, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class ProgramRoutes:
    """The handlers and the per-key program bounds of one server."""

    def __init__(self, engine: AutellixEngine, settings: ServerSettings) -> None:
        self.engine, self.settings = engine, settings
        self.series = metrics.ServerMetrics(engine)
        self._program_buckets: dict[str, _TokenBucket] = {}
        self.draining = False  # shutting down: new calls get 503, readiness fails

    def scope(self, request: Request) -> str:
        """A short id of the caller's key ("anon" without keys); raises 401."""
        if not self.settings.api_keys:
            return "anon"
        auth = request.headers.get("authorization", "")
        key = auth[7:] if auth.lower().startswith("bearer ") else ""
        # Constant time: the comparison must not tell how much of a key was right.
        if not any(hmac.compare_digest(key.encode(), k.encode()) for k in self.settings.api_keys):
            raise RequestError("Invalid or missing API key", status=401, code="invalid_api_key")
        return hashlib.sha256(key.encode()).hexdigest()[:12]

    def admit_program(self, scope: str) -> None:
        """A new program of this key: within its live-program cap and creation rate."""
        limit = self.settings.max_programs_per_key
        prefix = f"{scope}/"
        if sum(p.program_id.startswith(prefix) for p in self.engine.programs()) >= limit:
            raise RequestError(f"This key has {limit} live programs, the most allowed; end "
                               "some (DELETE /v1/programs/{id})", status=429,
                               code="too_many_programs")
        bucket = self._program_buckets.setdefault(scope, _TokenBucket(
            self.settings.program_rate_per_s))
        if not bucket.take():
            raise RequestError("Programs are being created too fast for this key "
                               f"(at most {self.settings.program_rate_per_s}/s)", status=429,
                               code="rate_limited")

    # -- endpoints ------------------------------------------------------------------------
    async def ready(self, request: Request) -> Response:
        """Readiness: can take traffic now (a replica is up, not shutting down)."""
        if self.draining:
            return JSONResponse({"status": "shutting down"}, status_code=503)
        if not self.engine.is_running:
            return JSONResponse({"status": "down"}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def live(self, request: Request) -> Response:
        """Liveness: 503 when the process should be restarted (no replica could run
        calls for ``EngineConfig.dead_after_s``, or the health monitor stopped)."""
        if not self.engine.is_alive:
            return JSONResponse({"status": "dead"}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def metrics(self, request: Request) -> Response:
        if self.settings.metrics_auth:
            self.scope(request)
        return Response(self.series.page(), media_type=metrics.CONTENT_TYPE)

    async def program(self, request: Request) -> Response:
        scope = self.scope(request)
        external = check_id(request.path_params["program_id"], "program_id")
        pid = f"{scope}/{external}"
        if request.method == "PUT":
            if not self.engine.is_program_running(pid):
                self.admit_program(scope)
            self.engine.ensure_program(pid)
        elif request.method == "DELETE":
            try:
                snap = self.engine.end_program(pid)
            except UnknownProgramError:
                raise RequestError(f"No program {external!r}", status=404) from None
            self.series.program_latency.observe(max(0.0, time.time() - snap.created))
            return JSONResponse(_snapshot(snap, external))
        snap = self.engine.program_stats(pid) if self.engine.is_program_running(pid) else None
        if snap is None:
            raise RequestError(f"No program {external!r}", status=404)
        return JSONResponse(_snapshot(snap, external))


def _snapshot(snap: Any, external: str) -> dict[str, Any]:
    t = snap.tally
    return {"program_id": external, "service": snap.service, "num_calls": t.calls,
            "active_threads": list(snap.active_threads),
            "tokens_generated": t.completion_tokens, "queue_wait_s": t.queue_wait_s,
            "preemptions": t.preemptions}
