"""The server's error for a bad request: an OpenAI-style error body with a status."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse


class RequestError(ValueError):
    """A bad request: becomes an OpenAI-style error body with ``status``."""

    def __init__(self, message: str, *, param: str | None = None, status: int = 400,
                 code: str | None = None) -> None:
        super().__init__(_encodable(message))
        self.param, self.status, self.code = param, status, code

    def body(self) -> dict[str, Any]:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return {"error": {"message": str(self), "type": kind, "param": self.param,
                          "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status)


def _encodable(text: str) -> str:
    """``text`` with what UTF-8 cannot encode (lone surrogates a client sent, quoted back
    in a validation message) as escapes, so that the error body can be written."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
