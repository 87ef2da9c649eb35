"""Request dependencies: the settings, the app's Redis client, and the operator check for writes."""

from __future__ import annotations

import hmac
from typing import Annotated

import anyio
import redis
from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from workers.settings import Settings


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
    expected = settings.operator_token.get_secret_value().encode()
    if credentials is None:
        message = "this endpoint needs the operator token: send 'Authorization: Bearer <token>'"
    elif hmac.compare_digest(credentials.credentials.encode(), expected):
        return
    else:
        message = "wrong operator token"
    raise HTTPException(status.HTTP_401_UNAUTHORIZED, message, headers={"WWW-Authenticate": "Bearer"})


OperatorDep = Depends(_require_operator)
