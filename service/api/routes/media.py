"""An alert's media for players and home-automation tools: `clip.mp4` (H.264, from a few seconds before
the alert to its end, optionally with the heat map overlay) and `snapshot.jpg` (its peak frame)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import cv2
import numpy as np
import redis
from fastapi import APIRouter, HTTPException, Query, Response, status

from service.api import rendering
from service.api.deps import RedisDep, SettingsDep
from service.api.routes.heatmaps import frame_image
from workers.bus import schemas
from workers.ingest.clips import write_clip
from workers.store import alerts as store
from workers.store import frames

router = APIRouter(prefix="/api/alerts", tags=["alerts"])

PRE_ROLL_S = 3.0  # footage before the alert started: what led up to it
MAX_CLIP_S = 120.0  # an open alert's clip stops here: a player gets it in a few seconds
MAX_FPS = 60
JPEG_QUALITY = 90


def _alert(client: redis.Redis, alert_id: str) -> schemas.Alert:
    alert = store.get_alert(client, alert_id)
    if alert is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alert with id '{alert_id}'")
    return alert


def clip_fps(messages: list[schemas.FrameMessage], default: float) -> int:
    """The frame rate the frames were captured at (their mean spacing), else `default`."""
    span = messages[-1].ts - messages[0].ts if len(messages) > 1 else 0.0
    fps = (len(messages) - 1) / span if span > 0 else default
    return int(min(max(round(fps), 1), MAX_FPS))


def clip_images(
    client: redis.Redis, camera: str, messages: list[schemas.FrameMessage], heatmap: bool
) -> list[np.ndarray]:
    """The frames as images of one even size (H.264 needs it), gray or with the error maps overlaid on a
    common scale (frames without a kept map show none)."""
    height, width = messages[0].height, messages[0].width
    grays = [m.array((height, width)) for m in messages]
    if not heatmap:
        return [rendering.even_size(gray) for gray in grays]
    maps = frames.error_maps(client, camera, [m.seq for m in messages])
    top = max((float(np.nanmax(m)) for m in maps.values()), default=0.0)
    nothing = np.zeros((1, 1), np.float32)
    return [
        rendering.even_size(
            rendering.render_overlay(
                rendering.gray_to_bgr(gray), maps.get(m.seq, nothing), label="pixel error", top=top or 1.0
            )
        )
        for m, gray in zip(messages, grays, strict=True)
    ]


@router.get(
    "/{alert_id}/clip.mp4",
    response_class=Response,
    summary="The alert as an H.264 MP4: from a few seconds before it started to its end (or now)",
    responses={
        200: {"content": {"video/mp4": {}}},
        404: {"description": "Unknown alert, or its frames are no longer buffered."},
    },
)
def alert_clip_mp4(
    alert_id: str,
    client: RedisDep,
    settings: SettingsDep,
    heatmap: Annotated[bool, Query(description="Overlay the pixel error maps that are still kept.")] = False,
) -> Response:
    alert = _alert(client, alert_id)
    start = alert.start_ts - PRE_ROLL_S
    end = min(alert.end_ts, start + MAX_CLIP_S) if alert.end_ts is not None else start + MAX_CLIP_S
    messages = frames.frames_between(client, alert.camera, start, end)
    if not messages:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"the frames of alert '{alert_id}' are no longer buffered: a camera keeps "
            f"{settings.analysis.buffer_seconds} s of analysis frames (VIGIL_ANALYSIS__BUFFER_SECONDS)",
        )
    fps = clip_fps(messages, settings.analysis.fps)
    # a file, not a buffer: the MP4 index is moved to the front (faststart) by rewriting the file
    with tempfile.TemporaryDirectory(prefix="vigil-clip-") as tmp:
        path = Path(tmp) / "clip.mp4"
        write_clip(path, clip_images(client, alert.camera, messages, heatmap), fps)
        mp4 = path.read_bytes()
    return Response(mp4, media_type="video/mp4", headers={"Cache-Control": "no-store"})


@router.get(
    "/{alert_id}/snapshot.jpg",
    response_class=Response,
    summary="The alert's peak frame as a JPEG",
    responses={200: {"content": {"image/jpeg": {}}}, 404: {"description": "Unknown alert."}},
)
def alert_snapshot(alert_id: str, client: RedisDep, settings: SettingsDep) -> Response:
    alert = _alert(client, alert_id)
    image = frame_image(
        client, alert.camera, alert.peak_seq, alert.peak_ts, settings.analysis.display_interval_s
    )
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return Response(jpeg.tobytes(), media_type="image/jpeg", headers={"Cache-Control": "no-store"})
