"""Alerts: a filtered, newest-first list with cursor pagination, and one alert by id."""

from __future__ import annotations

import base64
import binascii
import json
import math
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, status

from service.api.deps import RedisDep
from service.api.errors import invalid_input
from service.api.schemas import AlertList
from workers.bus.schemas import CAMERA_ID_PATTERN, Alert
from workers.store import alerts as alert_store
from workers.store.alerts import AlertPosition

router = APIRouter(prefix="/api/alerts", tags=["alerts"])


def encode_cursor(position: AlertPosition) -> str:
    raw = json.dumps([position.score, position.alert_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> AlertPosition:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        score, alert_id = json.loads(raw)
        if not isinstance(score, int | float) or not isinstance(alert_id, str):
            raise ValueError
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise invalid_input(("query", "cursor"), "not a next_cursor value returned by this endpoint") from exc
    return AlertPosition(float(score), alert_id)


def parse_since(value: str) -> float:
    """Epoch seconds, or an ISO 8601 time (UTC when it names no zone)."""
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds):
            return seconds
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise invalid_input(
            ("query", "since"),
            f"expected epoch seconds or an ISO 8601 time such as 2026-01-31T08:00:00Z, got {value!r}",
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@router.get("", summary="Alerts, newest first")
def list_alerts(
    client: RedisDep,
    camera: Annotated[
        str | None, Query(pattern=CAMERA_ID_PATTERN, description="Only this camera's alerts.")
    ] = None,
    since: Annotated[
        str | None,
        Query(description="Only alerts that started at or after this time (epoch seconds or ISO 8601)."),
    ] = None,
    state: Annotated[
        Literal["open", "closed"] | None, Query(description="Only open or only closed alerts.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Most alerts in one page.")] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
) -> AlertList:
    page = alert_store.list_alerts(
        client,
        limit=limit,
        camera=camera,
        since_ts=parse_since(since) if since is not None else None,
        state=state,
        after=decode_cursor(cursor) if cursor is not None else None,
    )
    next_cursor = encode_cursor(page.next_position) if page.next_position is not None else None
    return AlertList(items=page.alerts, next_cursor=next_cursor)


@router.get("/{alert_id}", summary="One alert", responses={404: {"description": "Unknown alert."}})
def get_alert(alert_id: str, client: RedisDep) -> Alert:
    alert = alert_store.get_alert(client, alert_id)
    if alert is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alert with id '{alert_id}'")
    return alert
