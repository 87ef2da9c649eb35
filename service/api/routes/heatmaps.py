"""Heat map images (an alert's peak error map, a camera's anomaly heat over a time window), an alert's clip
frames, and the live score series of a camera, for the console's plots."""

from __future__ import annotations

import re
import time
from typing import Annotated, TypeVar

import numpy as np
import redis
from fastapi import APIRouter, HTTPException, Path, Query, Response, status
from pydantic import BaseModel, Field

from service.api import rendering
from service.api.deps import RedisDep, SettingsDep
from service.api.errors import invalid_input
from service.api.routes.alerts import parse_since
from workers.bus import schemas
from workers.store import alerts as alert_store
from workers.store import cameras, frames

router = APIRouter(tags=["heatmaps"])

CameraIdPath = Annotated[str, Path(pattern=schemas.CAMERA_ID_PATTERN, description="Camera id.")]
PNG_RESPONSE = {200: {"content": {"image/png": {}}}}

WINDOW_PATTERN = re.compile(r"(\d{1,5})([smhd])")
WINDOW_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MIN_WINDOW_S = 60  # heat is kept per minute
MAX_WINDOW_S = 7 * 86400
# Stream entries read on each side of a time when looking for the frame of a given seq (clock skew room).
FRAMES_NEAR = 8
DISPLAY_NEAR = 2
MAX_SCORES = 3000
CURSOR_PATTERN = r"^\d{1,19}-\d{1,19}$"  # a score's stream entry id

Message = TypeVar("Message", schemas.FrameMessage, schemas.DisplayMessage)


CLIP_MARGIN_S = 2.0  # clip frames shown before an alert starts and after it ends
MAX_CLIP_FRAMES = 30
ENTRY_ID_PATTERN = r"^\d{1,20}-\d{1,20}$"


class ClipFrame(BaseModel):
    seq: int
    ts: float
    url: str = Field(description="The display JPEG of this frame.")


class ScorePoint(BaseModel):
    cursor: str = Field(description="Where this score stands: pass as `after` or `before` to page from it.")
    seq: int
    ts: float = Field(description="Capture time of the frame (epoch seconds).")
    score: float
    anomalous: bool
    raw: float = Field(description="The detector's frame score before normalization.")
    model: str = Field(description="Model version that scored the frame.")
    scored_ts: float = Field(description="When the frame was scored: scored_ts - ts is its latency.")
    session: int | None = Field(description="The camera's stream session (a reconnect starts a new one).")


def parse_window(window: str) -> int:
    """Seconds in a window such as '10m', '1h', '24h' or '7d' (1 minute to 7 days)."""
    match = WINDOW_PATTERN.fullmatch(window.strip())
    if match is None:
        raise invalid_input(
            ("query", "window"), f"expected a duration such as 10m, 1h or 24h, got {window!r}"
        )
    seconds = int(match[1]) * WINDOW_UNITS_S[match[2]]
    if not MIN_WINDOW_S <= seconds <= MAX_WINDOW_S:
        raise invalid_input(("query", "window"), f"window must be between 1m and 7d, got {window!r}")
    return seconds


def _png(image: np.ndarray) -> Response:
    return Response(
        rendering.encode_png(image), media_type="image/png", headers={"Cache-Control": "no-store"}
    )


def frame_image(client: redis.Redis, camera: str, seq: int, ts: float, tolerance_s: float) -> np.ndarray:
    """The camera image of frame `seq` taken at `ts`: its display JPEG, else its analysis frame (gray),
    else the display JPEG nearest in time (within `tolerance_s`), else a neutral background."""
    displays = [message for _, message in frames.displays_near(client, camera, ts, DISPLAY_NEAR)]
    exact = next((message for message in displays if message.seq == seq), None)
    if exact is not None:
        return rendering.decode_jpeg(exact.jpeg)
    frame = next((m for m in frames.frames_near(client, camera, ts, FRAMES_NEAR) if m.seq == seq), None)
    if frame is not None:
        return rendering.gray_to_bgr(frame.array())
    if displays and abs(displays[0].ts - ts) <= tolerance_s:
        return rendering.decode_jpeg(displays[0].jpeg)
    return rendering.neutral_image(*_fallback_size(client, camera))


def _latest_image(client: redis.Redis, camera: str) -> np.ndarray | None:
    """The camera's latest snapshot, else its newest analysis frame."""
    jpeg = frames.get_snapshot(client, camera)
    if jpeg is not None:
        return rendering.decode_jpeg(jpeg)
    frame = frames.newest_frame(client, camera)
    return rendering.gray_to_bgr(frame.array()) if frame is not None else None


def _fallback_size(client: redis.Redis, camera: str) -> tuple[int, int]:
    """(height, width) for a background when no camera image is left: the camera's analysis size."""
    config = cameras.get_camera(client, camera)
    camera_status = cameras.camera_statuses(client).get(camera)
    height = (config and config.height) or (camera_status and camera_status.height) or 3
    width = (config and config.width) or (camera_status and camera_status.width) or 4
    return height, width


@router.get(
    "/api/alerts/{alert_id}/heatmap.png",
    response_class=Response,
    summary="The alert's peak frame with its pixel error map as a colour overlay and a scale bar",
    responses={**PNG_RESPONSE, 404: {"description": "Unknown alert, or its error map has expired."}},
)
def alert_heatmap(alert_id: str, client: RedisDep, settings: SettingsDep) -> Response:
    alert = alert_store.get_alert(client, alert_id)
    if alert is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alert with id '{alert_id}'")
    error_map = frames.error_map(client, alert.camera, alert.peak_seq)
    if error_map is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"the error map of alert '{alert_id}' (frame {alert.peak_seq}) is no longer kept: "
            f"maps expire after {settings.retention.error_maps_s:g} s",
        )
    base = frame_image(
        client, alert.camera, alert.peak_seq, alert.peak_ts, settings.analysis.display_interval_s
    )
    label = f"pixel error, frame {alert.peak_seq}"
    return _png(rendering.render_overlay(base, error_map, label=label))


@router.get(
    "/api/alerts/{alert_id}/clip",
    summary="The alert's clip: display frames from just before it started to just after it ended",
    responses={404: {"description": "Unknown alert."}},
)
def alert_clip(alert_id: str, client: RedisDep) -> list[ClipFrame]:
    alert = alert_store.get_alert(client, alert_id)
    if alert is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alert with id '{alert_id}'")
    end_ts = alert.end_ts if alert.end_ts is not None else time.time()
    entries = frames.displays_between(
        client, alert.camera, alert.start_ts - CLIP_MARGIN_S, end_ts + CLIP_MARGIN_S
    )
    step = max(1, -(-len(entries) // MAX_CLIP_FRAMES))  # evenly thinned to at most MAX_CLIP_FRAMES
    return [
        ClipFrame(seq=frame.seq, ts=frame.ts, url=f"/api/cameras/{alert.camera}/display/{entry_id}.jpg")
        for entry_id, frame in entries[::step]
    ]


@router.get(
    "/api/cameras/{camera_id}/display/{entry_id}.jpg",
    response_class=Response,
    summary="One stored display frame of a camera (see an alert's clip)",
    responses={200: {"content": {"image/jpeg": {}}}, 404: {"description": "No such frame (any more)."}},
)
def display_frame(
    camera_id: CameraIdPath,
    entry_id: Annotated[str, Path(pattern=ENTRY_ID_PATTERN, description="Display stream entry id.")],
    client: RedisDep,
) -> Response:
    frame = frames.display_frame(client, camera_id, entry_id)
    if frame is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"frame {entry_id} of camera '{camera_id}' is not kept (any more)"
        )
    return Response(frame.jpeg, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})


@router.get(
    "/api/cameras/{camera_id}/heatmap.png",
    response_class=Response,
    summary="Where the camera's anomalies were over a time window, over its latest image",
    responses={
        **PNG_RESPONSE,
        404: {"description": "No anomaly heat for the camera in the window."},
        422: {"description": "Invalid window."},
    },
)
def camera_heatmap(
    camera_id: CameraIdPath,
    client: RedisDep,
    window: Annotated[str, Query(description="How far back: e.g. 10m, 1h, 24h (1m to 7d).")] = "1h",
) -> Response:
    seconds = parse_window(window)
    now = time.time()
    minutes = range(int((now - seconds) // 60), int(now // 60) + 1)
    maps = frames.heat_maps(client, camera_id, minutes)
    if not maps:
        if cameras.get_camera(client, camera_id) is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no camera with id '{camera_id}'")
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"camera '{camera_id}' had no anomalous frames in the last {window}"
        )
    heat = rendering.sum_maps(maps)
    base = _latest_image(client, camera_id)
    if base is None:
        base = rendering.neutral_image(*heat.shape)
    return _png(rendering.render_overlay(base, heat, label=f"anomaly heat, last {window}"))


@router.get(
    "/api/cameras/{camera_id}/scores",
    summary="The camera's latest frame scores, oldest first (for live plots)",
    responses={404: {"description": "Unknown camera."}},
)
def camera_scores(
    camera_id: CameraIdPath,
    client: RedisDep,
    since: Annotated[
        str | None,
        Query(description="Only frames captured at or after this time (epoch seconds or ISO 8601)."),
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=MAX_SCORES, description="Most scores returned (the newest, or next to a cursor).")
    ] = 300,
    after: Annotated[
        str | None, Query(pattern=CURSOR_PATTERN, description="The first `limit` scores after this cursor.")
    ] = None,
    before: Annotated[
        str | None, Query(pattern=CURSOR_PATTERN, description="The last `limit` scores before this cursor.")
    ] = None,
) -> list[ScorePoint]:
    if after is not None and before is not None:
        raise invalid_input(("query", "before"), "give either `after` or `before`, not both")
    since_ts = parse_since(since) if since is not None else None
    scores = frames.page_scores(client, camera_id, since_ts, limit, after=after, before=before)
    if not scores and cameras.get_camera(client, camera_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no camera with id '{camera_id}'")
    fields = set(ScorePoint.model_fields) - {"cursor"}
    return [ScorePoint(cursor=cursor, **m.model_dump(include=fields)) for cursor, m in scores]
