"""Snoozing a camera, or one zone of it, for a time span: no alerts from it until the span ends."""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, Field

from service.api.deps import OperatorDep, RedisDep
from service.api.routes.cameras import CameraIdPath
from workers.bus.schemas import MAX_SNOOZE_S, Snooze, Zone, now
from workers.store import cameras, snoozes

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/cameras", tags=["snoozes"])


class SnoozeIn(BaseModel):
    duration_s: float = Field(
        strict=True, gt=0, le=MAX_SNOOZE_S, description="How long, in seconds, from now (at most 7 days)."
    )
    zone: Zone | None = Field(None, description="Snooze only this area of the image (default: the camera).")


def _known(client: RedisDep, camera_id: str) -> None:
    if cameras.get_camera(client, camera_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no camera with id '{camera_id}'")


@router.get(
    "/{camera_id}/snooze",
    summary="What of the camera is snoozed, until when (unix seconds; 0: not snoozed)",
    responses={404: {"description": "Unknown camera."}},
)
def get_snooze(camera_id: CameraIdPath, client: RedisDep) -> Snooze:
    _known(client, camera_id)
    return snoozes.get_snooze(client, camera_id, now())


@router.post(
    "/{camera_id}/snooze",
    dependencies=[OperatorDep],
    summary="Snooze the camera, or a zone of it, for a time span",
    responses={404: {"description": "Unknown camera."}, 401: {"description": "Operator token needed."}},
)
def snooze_camera(camera_id: CameraIdPath, body: SnoozeIn, client: RedisDep) -> Snooze:
    _known(client, camera_id)
    started = now()
    snooze = snoozes.snooze(client, camera_id, started + body.duration_s, started, body.zone)
    log.info(
        "camera %s: %s snoozed for %.0f s", camera_id, "a zone" if body.zone else "alerts", body.duration_s
    )
    return snooze


@router.delete(
    "/{camera_id}/snooze",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[OperatorDep],
    summary="End every snooze of the camera now",
    responses={404: {"description": "Unknown camera."}, 401: {"description": "Operator token needed."}},
)
def end_snooze(camera_id: CameraIdPath, client: RedisDep) -> None:
    _known(client, camera_id)
    if snoozes.clear_snooze(client, camera_id):
        log.info("camera %s: snooze ended", camera_id)
