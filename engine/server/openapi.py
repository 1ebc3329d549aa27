"""The server's OpenAPI description (``GET /openapi.json``), as ``vllm serve`` publishes.

The request schemas are vLLM's own request models (the server validates with them
first, ``protocol.parse_request``) plus this server's fields; the responses are
OpenAI's. Generated once per app from the models, so it cannot drift from them.
"""

from __future__ import annotations

from typing import Any

#: Our body fields beside vLLM's (which has ``session_id`` and ``priority``).
EXTRA_FIELDS = {
    "program_id": {"type": "string", "maxLength": 256,
                   "description": "The program the call belongs to (else a header or the "
                                  "session id names it)."},
    "thread_id": {"type": "string", "maxLength": 256, "default": "main",
                  "description": "The call's thread within its program."},
    "remaining_work": {"type": "number", "minimum": 0,
                       "description": "Benchmarks only: the program's remaining output "
                                      "tokens, read by the clairvoyant srpt policy."},
}


def document(model: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of a server of ``model``."""
    from pydantic.json_schema import models_json_schema
    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
    from vllm.entrypoints.openai.completion.protocol import CompletionRequest

    refs, defs = models_json_schema(
        [(ChatCompletionRequest, "validation"), (CompletionRequest, "validation")],
        ref_template="#/components/schemas/{model}")
    schemas = defs.get("$defs", {})
    for name in ("ChatCompletionRequest", "CompletionRequest"):
        schemas[name].setdefault("properties", {}).update(EXTRA_FIELDS)
    error = {"description": "An OpenAI-style error", "content": {"application/json": {
        "schema": {"type": "object", "properties": {"error": {"type": "object"}}}}}}

    def completion(request: str, summary: str) -> dict[str, Any]:
        return {"post": {
            "summary": summary, "requestBody": {"required": True, "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{request}"}}}},
            "parameters": [{"name": h, "in": "header", "required": False,
                            "schema": {"type": "string"}}
                           for h in ("X-Autellix-Program-Id", "X-Autellix-Thread-Id",
                                     "X-Session-ID", "X-Vllm-Priority", "traceparent")],
            "responses": {"200": {"description": "The completion (JSON, or SSE when "
                                                 "stream is true)"},
                          **{code: error for code in ("400", "401", "404", "413", "415",
                                                      "429", "503")}}}}

    program = {"parameters": [{"name": "program_id", "in": "path", "required": True,
                               "schema": {"type": "string", "maxLength": 256}}],
               **{m: {"responses": {"200": {"description": "The program's statistics"},
                                    "404": error}} for m in ("get", "put", "delete")}}
    plain = {"get": {"responses": {"200": {"description": "OK"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Autellix: program-aware serving", "version": "1",
                 "description": f"OpenAI-compatible endpoints serving {model}."},
        "paths": {
            "/v1/chat/completions": completion("ChatCompletionRequest", "Chat completion"),
            "/v1/completions": completion("CompletionRequest", "Text completion"),
            "/v1/models": plain, "/v1/programs/{program_id}": program,
            "/health": plain, "/metrics": plain,
        },
        "components": {"schemas": schemas},
    }
