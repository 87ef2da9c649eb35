"""The FastAPI application: REST for cameras and alerts, a WebSocket of alert events, health probes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from redis.exceptions import RedisError

from service.api.deps import ReadTokenGuard
from service.api.errors import BodySizeLimit, install_error_handlers
from service.api.routes import (
    alerts,
    cameras,
    console,
    feedback,
    health,
    heatmaps,
    media,
    metrics,
    models,
    snoozes,
    ws,
)
from workers.bus.connection import connect
from workers.config import Settings, get_settings
from workers.proc.redaction import redact
from workers.store.key_migration import migrate_key_layout

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 1024 * 1024
# Answers any operation may give, documented once for all.
COMMON_RESPONSES: dict[int | str, dict[str, object]] = {
    400: {"description": "The body could not be read as JSON."},
    401: {"description": "A token is needed (operator token for writes; read token when configured)."},
    413: {"description": f"Request body over {MAX_REQUEST_BYTES} bytes."},
    503: {"description": "Redis is unavailable; retry after the Retry-After seconds."},
}


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API over the Redis at `settings.redis_url` (which must be set: `vigil up` sets it for an embedded Redis)."""
    settings = settings or get_settings()
    if settings.redis_url is None:
        raise ValueError("the API needs a Redis URL (VIGIL_REDIS_URL), or run it under `vigil up`")
    redis_url = settings.redis_url

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = connect(redis_url)
        app.state.settings = settings
        app.state.redis = client
        app.state.feed_limiter = anyio.CapacityLimiter(ws.MAX_FEED_READERS)
        try:
            await anyio.to_thread.run_sync(client.ping)
            await anyio.to_thread.run_sync(migrate_key_layout, client)  # an upgraded site's keys
        except RedisError as exc:  # keep serving: requests answer 503 until Redis is back
            log.warning("Redis at %s is not answering yet: %s", redact(redis_url), exc)
        try:
            yield
        finally:
            client.close()

    app = FastAPI(
        title="Vigil",
        description="Real-time video anomaly detection: cameras, alerts and a live alert feed.",
        version="0.1.0",
        lifespan=lifespan,
        responses=COMMON_RESPONSES,
    )
    install_error_handlers(app)
    # The last added runs first: CORS answers preflights (which carry no token) before the token check.
    app.add_middleware(ReadTokenGuard, settings=settings)
    app.add_middleware(BodySizeLimit, max_bytes=MAX_REQUEST_BYTES)
    if settings.cors_origins:  # off unless origins are listed: the page is served from the API itself
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    for router in (
        health.router,
        cameras.router,
        snoozes.router,
        alerts.router,
        ws.router,
        heatmaps.router,
        media.router,
        metrics.router,
        feedback.router,
        models.router,
        console.router,  # last: it serves the page at / and its static files
    ):
        app.include_router(router)
    return app
