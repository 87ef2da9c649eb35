"""Snoozed cameras and zones (keys.SNOOZES): written by the API, read by the inference worker each batch."""

from __future__ import annotations

import logging

import redis
from pydantic import ValidationError

from workers.bus import keys, schemas

log = logging.getLogger(__name__)

MAX_ZONES = 32  # as schemas.Snooze allows


def active_snoozes(client: redis.Redis, now_ts: float) -> dict[str, schemas.Snooze]:
    """Per camera, the snoozes in force at now_ts (an invalid stored entry is logged and skipped)."""
    active = {}
    for camera, raw in client.hgetall(keys.SNOOZES).items():
        try:
            snooze = schemas.Snooze.model_validate_json(raw).active(now_ts)
        except ValidationError as exc:
            log.warning("camera %s: invalid stored snooze skipped: %s", camera.decode(errors="replace"), exc)
            continue
        if snooze is not None:
            active[snooze.camera] = snooze
    return active


def get_snooze(client: redis.Redis, camera: str, now_ts: float) -> schemas.Snooze:
    return active_snoozes(client, now_ts).get(camera) or schemas.Snooze(camera=camera)


def snooze(
    client: redis.Redis, camera: str, until_ts: float, now_ts: float, zone: schemas.Zone | None = None
) -> schemas.Snooze:
    """Snoozes the camera, or one zone of it, until until_ts; expired snoozes are dropped on the way."""
    current = get_snooze(client, camera, now_ts)
    if zone is None:
        current.until_ts = max(current.until_ts, until_ts)
    else:
        current.zones = [z for z in current.zones if z.points != zone.points]
        current.zones.append(schemas.SnoozedZone(points=zone.points, until_ts=until_ts))
        current.zones = current.zones[-MAX_ZONES:]  # the oldest go first
    client.hset(keys.SNOOZES, camera, current.model_dump_json())
    return current


def clear_snooze(client: redis.Redis, camera: str) -> bool:
    return bool(client.hdel(keys.SNOOZES, camera))
