"""WebSocket /ws/alerts: replay of alert events after a client's last id, then the live feed.

One loop serves both: it reads the event stream from the last id delivered, so a client that
reconnects with the id of the last event it got misses nothing and gets nothing twice. The blocking
stream reads run in worker threads bounded by their own limiter, so feeds never hold up requests.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass
from typing import Annotated

import anyio
import redis
from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect, status
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.api.deps import FeedLimiterDep, RedisDep
from service.api.errors import REDIS_UNAVAILABLE
from service.api.schemas import AlertEventOut
from workers.bus.schemas import CAMERA_ID_PATTERN, AlertEvent
from workers.store import alerts as alert_store

log = logging.getLogger(__name__)

router = APIRouter(tags=["alerts"])

STREAM_ID = re.compile(r"\d{1,20}(-\d{1,20})?")
# A WebSocket close reason holds at most 123 bytes; the error frame before it has the whole text.
CLOSE_REASON_BYTES = 123
# Short blocking reads keep the thread of a dropped client's read from lingering.
READ_BLOCK_MS = 1000
READ_BATCH = 100
# Most feeds reading at once; further clients wait their turn (their events are delayed, not lost).
MAX_FEED_READERS = 64
# Clients have nothing to say on the feed: a larger message closes it (the server also caps frames at this).
MAX_CLIENT_MESSAGE_BYTES = 4096


@dataclass(frozen=True)
class _EventReader:
    """Alert stream reads in worker threads; a cancelled read's thread ends by itself within READ_BLOCK_MS."""

    client: redis.Redis
    limiter: anyio.CapacityLimiter

    async def last_id(self) -> str:
        return await anyio.to_thread.run_sync(
            alert_store.last_alert_event_id, self.client, limiter=self.limiter, abandon_on_cancel=True
        )

    async def after(self, event_id: str) -> list[tuple[str, AlertEvent]]:
        read = functools.partial(
            alert_store.read_alert_events, self.client, event_id, count=READ_BATCH, block_ms=READ_BLOCK_MS
        )
        return await anyio.to_thread.run_sync(read, limiter=self.limiter, abandon_on_cancel=True)


async def _refuse(websocket: WebSocket, reason: str) -> None:
    await websocket.send_json({"error": reason})
    short_reason = reason.encode()[:CLOSE_REASON_BYTES].decode(errors="ignore")
    await websocket.close(code=status.WS_1008_POLICY_VIOLATION, reason=short_reason)


async def _send_events(websocket: WebSocket, events: _EventReader, after_id: str, camera: str | None) -> None:
    while True:
        for event_id, event in await events.after(after_id):
            after_id = event_id
            if camera is None or event.camera == camera:
                frame = AlertEventOut(id=event_id, type=event.type, alert=event.parsed_alert())
                await websocket.send_text(frame.model_dump_json())


async def _serve_feed(
    websocket: WebSocket, events: _EventReader, last_id: str | None, camera: str | None
) -> None:
    try:
        after_id = last_id if last_id is not None else await events.last_id()
        await _send_events(websocket, events, after_id, camera)
    except ResponseError as exc:
        log.info("alert feed refused last_id %r: %s", last_id, exc)
        await _refuse(websocket, f"last_id: {last_id!r} is not a valid alert event id")
    except (RedisConnectionError, RedisTimeoutError) as exc:
        log.warning("alert feed stopped: Redis unavailable: %s", exc)
        await websocket.close(code=status.WS_1011_INTERNAL_ERROR, reason=REDIS_UNAVAILABLE)
    except WebSocketDisconnect:
        pass


async def _cancel_on_disconnect(websocket: WebSocket, scope: anyio.CancelScope) -> None:
    """Client messages are not used; this loop notices the client leaving, and closes on an oversized message."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            break
        size = len(message.get("bytes") or b"") + len((message.get("text") or "").encode())
        if size > MAX_CLIENT_MESSAGE_BYTES:
            log.info("alert feed closed: client message of %d bytes", size)
            await websocket.close(
                code=status.WS_1009_MESSAGE_TOO_BIG,
                reason=f"messages over {MAX_CLIENT_MESSAGE_BYTES} bytes are refused",
            )
            break
    scope.cancel()


@router.websocket("/ws/alerts")
async def alert_events(
    websocket: WebSocket,
    client: RedisDep,
    limiter: FeedLimiterDep,
    last_id: Annotated[str | None, Query(description="Replay the events after this event id first.")] = None,
    camera: Annotated[str | None, Query(description="Only this camera's events.")] = None,
) -> None:
    """Frames are JSON {id, type, alert}; an invalid query gets an {error} frame and a 1008 close."""
    await websocket.accept()
    if last_id is not None and not STREAM_ID.fullmatch(last_id):
        await _refuse(websocket, f"last_id: {last_id!r} is not an alert event id (like 1764061200000-0)")
        return
    if camera is not None and not re.fullmatch(CAMERA_ID_PATTERN, camera):
        await _refuse(websocket, f"camera: {camera!r} is not a camera id")
        return
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(_cancel_on_disconnect, websocket, tasks.cancel_scope)
        await _serve_feed(websocket, _EventReader(client, limiter), last_id, camera)
        tasks.cancel_scope.cancel()
