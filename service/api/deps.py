"""Request dependencies: the settings, the app's Redis client, the operator check for writes, and the
read-token guard (ASGI middleware) in front of everything but the health probes."""

from __future__ import annotations

import hmac
from http.cookies import SimpleCookie
from typing import Annotated
from urllib.parse import parse_qs

import anyio
import redis
from fastapi import Depends, HTTPException, status
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import HTTPConnection, cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from workers.config import Settings


def _settings(connection: HTTPConnection) -> Settings:
    return connection.app.state.settings


def _redis(connection: HTTPConnection) -> redis.Redis:
    return connection.app.state.redis


def _feed_limiter(connection: HTTPConnection) -> anyio.CapacityLimiter:
    return connection.app.state.feed_limiter


SettingsDep = Annotated[Settings, Depends(_settings)]
RedisDep = Annotated[redis.Redis, Depends(_redis)]
# Threads for the blocking reads of live alert feeds, apart from those serving requests.
FeedLimiterDep = Annotated[anyio.CapacityLimiter, Depends(_feed_limiter)]

_bearer = HTTPBearer(auto_error=False, description="The operator token (VIGIL_OPERATOR_TOKEN).")


def _require_operator(
    settings: SettingsDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """Writes need `Authorization: Bearer <operator token>` when an operator token is configured."""
    if settings.operator_token is None:
        return
    if credentials is None:
        message = "this endpoint needs the operator token: send 'Authorization: Bearer <token>'"
    elif token_matches(credentials.credentials, settings.operator_token):
        return
    else:
        message = "wrong operator token"
    raise HTTPException(status.HTTP_401_UNAUTHORIZED, message, headers={"WWW-Authenticate": "Bearer"})


OperatorDep = Depends(_require_operator)


def token_matches(candidate: str, *tokens: SecretStr | None) -> bool:
    """Whether `candidate` equals one of the configured tokens, compared in constant time."""
    given = candidate.encode()
    return any(
        token is not None and hmac.compare_digest(given, token.get_secret_value().encode())
        for token in tokens
    )


OPEN_PATHS = frozenset({"/healthz", "/readyz"})  # probes of orchestrators, which hold no token
TOKEN_QUERY = "token"
TOKEN_COOKIE = "vigil_token"


class ReadTokenGuard:
    """ASGI middleware: with `settings.read_token` set, every HTTP request and WebSocket but the health probes
    needs the read or the operator token, as `Authorization: Bearer <token>`, `?token=<token>` or the cookie
    that a page opened with `?token=` receives (so its own requests and WebSocket carry it)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    def _presented(self, scope: Scope) -> tuple[list[str], bool]:
        """The tokens a request presents, and whether one came in the query."""
        headers = Headers(scope=scope)
        found = []
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and credentials:
            found.append(credentials.strip())
        cookie = cookie_parser(headers.get("cookie", "")).get(TOKEN_COOKIE)  # lenient, as browsers send them
        if cookie:
            found.append(cookie)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(TOKEN_QUERY, [])
        return found + query, bool(query)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        read_token = self.settings.read_token
        if read_token is None or scope["type"] not in ("http", "websocket") or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        presented, in_query = self._presented(scope)
        if not any(token_matches(token, read_token, self.settings.operator_token) for token in presented):
            await self._refuse(scope, receive, send, "wrong token" if presented else None)
            return
        if not (in_query and scope["type"] == "http"):
            await self.app(scope, receive, send)
            return
        token = next(t for t in presented if token_matches(t, read_token, self.settings.operator_token))

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                cookie = SimpleCookie()
                cookie[TOKEN_COOKIE] = token
                cookie[TOKEN_COOKIE].update({"path": "/", "httponly": True, "samesite": "Strict"})
                MutableHeaders(scope=message).append("set-cookie", cookie[TOKEN_COOKIE].OutputString())
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, problem: str | None) -> None:
        detail = (
            problem or "this endpoint needs the read token: 'Authorization: Bearer <token>' or ?token=<token>"
        )
        if scope["type"] == "websocket":  # closing before accepting answers the handshake with 403
            await send({"type": "websocket.close", "code": status.WS_1008_POLICY_VIOLATION, "reason": detail})
            return
        response = JSONResponse({"detail": detail}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)
