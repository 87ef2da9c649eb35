"""The camera registry in Redis (keys.CAMERAS: id -> CameraConfig JSON) and the status the ingest worker
publishes (keys.CAMERA_STATUS). The ingest worker picks up every change within about a second.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import redis
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from workers.bus import keys, schemas
from workers.ingest.sources import camera_id_from_source

log = logging.getLogger(__name__)


def list_cameras(client: redis.Redis) -> list[schemas.CameraConfig]:
    """Every valid camera config, sorted by id (an invalid stored entry is logged and skipped)."""
    cameras = []
    for camera_id, raw in client.hgetall(keys.CAMERAS).items():
        try:
            cameras.append(schemas.CameraConfig.model_validate_json(raw))
        except ValidationError as exc:
            log.warning(
                "camera %s: invalid stored config skipped: %s", camera_id.decode(errors="replace"), exc
            )
    return sorted(cameras, key=lambda camera: camera.id)


def get_camera(client: redis.Redis, camera_id: str) -> schemas.CameraConfig | None:
    raw = client.hget(keys.CAMERAS, camera_id)
    return None if raw is None else schemas.CameraConfig.model_validate_json(raw)


def put_camera(client: redis.Redis, config: schemas.CameraConfig) -> None:
    """Add a camera or replace its config."""
    client.hset(keys.CAMERAS, config.id, config.model_dump_json())


def add_camera(client: redis.Redis, config: schemas.CameraConfig) -> bool:
    """Add a new camera; False, and nothing written, if the id is taken (one atomic HSETNX)."""
    return bool(client.hsetnx(keys.CAMERAS, config.id, config.model_dump_json()))


def replace_camera(client: redis.Redis, config: schemas.CameraConfig) -> bool:
    """Replace an existing camera's config; False, and nothing written, if there is no such camera."""
    script = "if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end return -1"
    return client.eval(script, 1, keys.CAMERAS, config.id, config.model_dump_json()) != -1


def validation_problems(exc: ValidationError) -> str:
    """A pydantic error as one line: `field.path: message; ...` (the rejected values are left out)."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()
    )


def remove_camera(client: redis.Redis, camera_id: str) -> bool:
    """Forget a camera and its status (its buffered frames age out); False if it was not there."""
    removed = bool(client.hdel(keys.CAMERAS, camera_id))
    client.hdel(keys.CAMERA_STATUS, camera_id)
    return removed


def camera_statuses(client: redis.Redis) -> dict[str, schemas.CameraStatus]:
    statuses = {}
    for camera_id, raw in client.hgetall(keys.CAMERA_STATUS).items():
        try:
            statuses[camera_id.decode()] = schemas.CameraStatus.model_validate_json(raw)
        except ValidationError:
            continue  # a status written by an incompatible version: shown as unknown
    return statuses


def source_size(client: redis.Redis, cameras: list[str]) -> tuple[int, int] | None:
    """(height, width) of the smallest frames the cameras' sources give (as their ingest last saw them);
    None when one of them has not streamed yet."""
    statuses = camera_statuses(client)
    known = [size for c in cameras if c in statuses and (size := statuses[c].source_size) is not None]
    if not cameras or len(known) < len(cameras):
        return None
    return min(h for h, _ in known), min(w for _, w in known)


def analysis_fps(client: redis.Redis, cameras: list[str]) -> float | None:
    """The lowest rate at which the cameras' frames reach the detector (their analysis fps, or fewer where
    a source is slower), as their ingest measures it while they stream (a camera reconnecting does not
    count: the rate of a site does not flip with it); None when none of them is streaming."""
    statuses = camera_statuses(client)
    rates = [statuses[c].fps for c in cameras if c in statuses and statuses[c].fps > 0]
    return min(rates) if rates else None


def new_camera_id(source: str, taken: set[str]) -> str:
    """An id for a new camera: the source's name when valid and free, else cam1, cam2, ..."""
    candidate = camera_id_from_source(source)
    if candidate and re.fullmatch(schemas.CAMERA_ID_PATTERN, candidate) and candidate not in taken:
        return candidate
    number = 1
    while f"cam{number}" in taken:
        number += 1
    return f"cam{number}"


def ensure_sources(
    client: redis.Redis, sources: list[str], *, fps: float | None = None, loop: bool = False
) -> list[schemas.CameraConfig]:
    """Cameras for `sources`: an existing camera with the same source is kept as it is, others are added."""
    existing = {camera.source: camera for camera in list_cameras(client)}
    taken = {camera.id for camera in existing.values()}
    result = []
    for source in sources:
        camera = existing.get(source)
        if camera is None:
            camera = schemas.CameraConfig(id=new_camera_id(source, taken), source=source, fps=fps, loop=loop)
            put_camera(client, camera)
            existing[source] = camera
            taken.add(camera.id)
        result.append(camera)
    return result


class SiteFileError(ValueError):
    """A site file that cannot be used; the message says where and why."""


class SiteFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cameras: list[schemas.CameraConfig]


def load_site_file(path: Path) -> list[schemas.CameraConfig]:
    """The cameras of a site file (YAML: `cameras: [CameraConfig, ...]`), all validated before any is used."""
    if path.is_dir():
        raise SiteFileError(f"{path} is a folder, not a site file (create it from docker/site.example.yml)")
    if not path.is_file():
        raise SiteFileError(f"{path}: no such site file")
    try:
        data = yaml.safe_load(path.read_text())
        site = SiteFile.model_validate(data)
    except yaml.YAMLError as exc:
        raise SiteFileError(f"{path}: not valid YAML: {exc}") from exc
    except ValidationError as exc:
        raise SiteFileError(f"{path}: {validation_problems(exc)}") from exc
    ids = [camera.id for camera in site.cameras]
    duplicates = sorted({camera_id for camera_id in ids if ids.count(camera_id) > 1})
    if duplicates:
        raise SiteFileError(f"{path}: camera ids listed twice: {', '.join(duplicates)}")
    return site.cameras


def apply_site(client: redis.Redis, cameras: list[schemas.CameraConfig]) -> None:
    """Create or replace the site file's cameras; cameras added another way are left alone."""
    for camera in cameras:
        put_camera(client, camera)
