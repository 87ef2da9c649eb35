"""Cameras: list, add, show, remove, latest snapshot. Sources are shown with their credentials masked."""

from __future__ import annotations

import logging
from typing import Annotated

import redis
from fastapi import APIRouter, HTTPException, Path, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from service.api.deps import OperatorDep, RedisDep, SettingsDep
from service.api.errors import invalid_input
from service.api.schemas import CameraOut, CameraPatch
from workers.bus.schemas import CAMERA_ID_PATTERN, CameraConfig, CameraStatus
from workers.config import Settings
from workers.inference.label_thresholds import camera_label_threshold
from workers.store import cameras, frames, model_registry

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/cameras", tags=["cameras"])

CameraIdPath = Annotated[str, Path(pattern=CAMERA_ID_PATTERN, description="Camera id.")]


def _not_found(camera_id: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"no camera with id '{camera_id}'")


def _moved_views(client: redis.Redis) -> set[str]:
    """The cameras the model in service scores without its place map: their views moved."""
    current = model_registry.current_version(client)
    return set(current.place_silenced_cameras) if current is not None else set()


def _out(
    client: redis.Redis,
    settings: Settings,
    config: CameraConfig,
    state: CameraStatus | None,
    moved: set[str] | None = None,
) -> CameraOut:
    asked = camera_label_threshold(client, config.id, settings.alerts.label_ceiling)
    moved = _moved_views(client) if moved is None else moved
    return CameraOut.of(config, state, asked, view_moved=config.id in moved)


@router.get("", summary="Every camera with its status")
def list_cameras(client: RedisDep, settings: SettingsDep) -> list[CameraOut]:
    statuses = cameras.camera_statuses(client)
    moved = _moved_views(client)
    return [
        _out(client, settings, config, statuses.get(config.id), moved)
        for config in cameras.list_cameras(client)
    ]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    dependencies=[OperatorDep],
    summary="Add a camera (the ingest worker starts it)",
    responses={
        409: {"description": "A camera with this id exists."},
        401: {"description": "Operator token needed."},
    },
)
def add_camera(config: CameraConfig, client: RedisDep, settings: SettingsDep) -> CameraOut:
    if not cameras.add_camera(client, config):
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"a camera with id '{config.id}' exists; delete it first"
        )
    log.info("camera %s added", config.id)
    return _out(client, settings, config, None)


@router.get(
    "/{camera_id}", summary="One camera with its status", responses={404: {"description": "Unknown camera."}}
)
def get_camera(camera_id: CameraIdPath, client: RedisDep, settings: SettingsDep) -> CameraOut:
    config = cameras.get_camera(client, camera_id)
    if config is None:
        raise _not_found(camera_id)
    return _out(client, settings, config, cameras.camera_statuses(client).get(camera_id))


@router.put(
    "/{camera_id}",
    dependencies=[OperatorDep],
    summary="Change a camera's settings (sensitivity, ignore zones, source, ...); the workers follow within a second",
    responses={
        404: {"description": "Unknown camera."},
        422: {"description": "Invalid settings, or the body's id differs from the path."},
        401: {"description": "Operator token needed."},
    },
)
def replace_camera(
    camera_id: CameraIdPath, config: CameraConfig, client: RedisDep, settings: SettingsDep
) -> CameraOut:
    if config.id != camera_id:
        raise invalid_input(("body", "id"), f"body id '{config.id}' differs from the path's '{camera_id}'")
    if not cameras.replace_camera(client, config):
        raise _not_found(camera_id)
    log.info("camera %s changed", camera_id)
    return _out(client, settings, config, cameras.camera_statuses(client).get(camera_id))


@router.patch(
    "/{camera_id}",
    dependencies=[OperatorDep],
    summary="Change some of a camera's settings (e.g. only its ignore zones); the stored source is kept",
    responses={
        404: {"description": "Unknown camera."},
        422: {"description": "Invalid settings."},
        401: {"description": "Operator token needed."},
    },
)
def update_camera(
    camera_id: CameraIdPath, patch: CameraPatch, client: RedisDep, settings: SettingsDep
) -> CameraOut:
    stored = cameras.get_camera(client, camera_id)
    if stored is None:
        raise _not_found(camera_id)
    try:
        config = CameraConfig.model_validate({**stored.model_dump(), **patch.model_dump(exclude_unset=True)})
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"]), "input": None} for error in exc.errors()]
        ) from exc
    if not cameras.replace_camera(client, config):
        raise _not_found(camera_id)
    log.info("camera %s changed: %s", camera_id, ", ".join(patch.model_dump(exclude_unset=True)))
    return _out(client, settings, config, cameras.camera_statuses(client).get(camera_id))


@router.delete(
    "/{camera_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[OperatorDep],
    summary="Remove a camera (the ingest worker stops it; its alerts are kept)",
    responses={404: {"description": "Unknown camera."}, 401: {"description": "Operator token needed."}},
)
def remove_camera(camera_id: CameraIdPath, client: RedisDep) -> None:
    if not cameras.remove_camera(client, camera_id):
        raise _not_found(camera_id)
    log.info("camera %s removed", camera_id)


@router.get(
    "/{camera_id}/snapshot.jpg",
    response_class=Response,
    summary="The camera's latest display image",
    responses={200: {"content": {"image/jpeg": {}}}, 404: {"description": "Unknown camera or no image yet."}},
)
def get_snapshot(camera_id: CameraIdPath, client: RedisDep) -> Response:
    jpeg = frames.get_snapshot(client, camera_id)
    if jpeg is None:
        if cameras.get_camera(client, camera_id) is None:
            raise _not_found(camera_id)
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"camera '{camera_id}' has no image yet")
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})
