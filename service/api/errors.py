"""Uniform JSON errors: every failure answers {"detail": ...}; a Redis outage is a 503, never a 500."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from workers.proc.redaction import redact

log = logging.getLogger(__name__)

REDIS_UNAVAILABLE = "Redis is unavailable; the API will answer again once it is reachable"


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Location, message and type of each error; the rejected input is left out (it may hold credentials)."""
    return [
        {
            "loc": list(error.get("loc", ())),
            "msg": redact(str(error.get("msg", ""))),
            "type": error.get("type"),
        }
        for error in exc.errors()
    ]


def invalid_input(location: tuple[str, ...], message: str) -> RequestValidationError:
    """A 422 for input the schema cannot describe (a cursor, a time), shaped like every other 422."""
    return RequestValidationError([{"loc": location, "msg": message, "type": "value_error"}])


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": _validation_errors(exc)}, status_code=422)


async def _redis_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("%s %s: Redis unavailable: %s", request.method, request.url.path, exc)
    return JSONResponse({"detail": REDIS_UNAVAILABLE}, status_code=503, headers={"Retry-After": "5"})


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal error; see the API log"}, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(RedisConnectionError, _redis_unavailable)
    app.add_exception_handler(RedisTimeoutError, _redis_unavailable)
    app.add_exception_handler(Exception, _unexpected_error)


class BodySizeLimit:
    """ASGI middleware: a JSON 413 for a request body over `max_bytes`, declared or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> StarletteHTTPException:
        return StarletteHTTPException(413, f"request body over the limit of {self.max_bytes} bytes")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            error = self._too_large()
            await JSONResponse({"detail": error.detail}, status_code=error.status_code)(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._too_large()  # an HTTPException: the body parser passes it on to the handler
            return message

        await self.app(scope, limited_receive, send)
