"""Custom routes beside LangGraph Server's: the embedded engine's process table.

``GET /autellix/programs``: each live program (a thread's program is
``"<assistant id>:<thread id>"``) with its attained service and calls.
"""

from shared import llm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def programs(request: Request) -> JSONResponse:
    if llm.base_url:
        return JSONResponse({"error": "the engine is remote: GET /v1/programs/{id} there"},
                            status_code=404)
    engine = llm.embedded_engine()
    return JSONResponse([
        {"program_id": p.program_id, "service": p.service, "calls": p.tally.calls,
         "completion_tokens": p.tally.completion_tokens,
         "retained_tokens": p.tally.retained_tokens,
         "cached_tokens": p.tally.cached_tokens, "active_threads": list(p.active_threads)}
        for p in engine.programs()])


app = Starlette(routes=[Route("/autellix/programs", programs)])
