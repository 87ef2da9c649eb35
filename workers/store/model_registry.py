"""Model versions in Redis: publish (make current), reject, list, roll back.

Inference workers poll the current-version key between batches and swap to the new model; the retraining
worker fine-tunes whatever is current. A publish is conditional on the current version being the one the
candidate was trained from, so an operator's rollback during a cycle is never overwritten by it.
"""

from __future__ import annotations

from pathlib import Path

import redis

from workers.bus import keys, schemas
from workers.bus.schemas import ModelVersion
from workers.store import model_files

HISTORY_KEPT = 100
CYCLES_KEPT = 50


class RegistryError(ValueError):
    """A rollback or publish that cannot be done (the message says why)."""


def get_version(client: redis.Redis, version: str) -> ModelVersion | None:
    raw = client.hget(keys.MODELS, version)
    return ModelVersion.model_validate_json(raw) if raw else None


def current_version(client: redis.Redis) -> ModelVersion | None:
    current = client.get(keys.CURRENT_MODEL)
    return (
        get_version(client, current.decode() if isinstance(current, bytes) else current) if current else None
    )


def list_versions(client: redis.Redis) -> list[ModelVersion]:
    """Every recorded version, newest first."""
    versions = [ModelVersion.model_validate_json(raw) for raw in client.hvals(keys.MODELS)]
    return sorted(versions, key=lambda v: v.created_ts, reverse=True)


def record_rejected(client: redis.Redis, version: ModelVersion) -> None:
    client.hset(
        keys.MODELS, version.version, version.model_copy(update={"status": "rejected"}).model_dump_json()
    )


def publish(client: redis.Redis, version: ModelVersion, expected_current: str | None) -> bool:
    """Makes `version` current if the current one is still `expected_current`; False when it changed.
    Its file goes into Redis with it (model_files), so inference hosts need no shared filesystem."""
    if version.path and version.sha256 is None and Path(version.path).is_file():
        version = model_files.store(client, version)
    if not _make_current(client, version, expected_current):
        return False
    history = [v.decode() if isinstance(v, bytes) else v for v in client.lrange(keys.MODEL_HISTORY, 0, -1)]
    model_files.prune(client, keep=list(dict.fromkeys(history))[: model_files.BLOBS_KEPT])
    return True


def _make_current(client: redis.Redis, version: ModelVersion, expected_current: str | None) -> bool:
    with client.pipeline(transaction=True) as pipe:
        try:
            pipe.watch(keys.CURRENT_MODEL)
            current = pipe.get(keys.CURRENT_MODEL)
            current_id = current.decode() if isinstance(current, bytes) else current
            if current_id != expected_current:
                return False
            previous = get_version(pipe, current_id) if current_id else None
            pipe.multi()
            if previous is not None and previous.version != version.version:
                pipe.hset(
                    keys.MODELS,
                    previous.version,
                    previous.model_copy(update={"status": "retired"}).model_dump_json(),
                )
            pipe.hset(
                keys.MODELS,
                version.version,
                version.model_copy(update={"status": "serving"}).model_dump_json(),
            )
            pipe.set(keys.CURRENT_MODEL, version.version)
            pipe.lpush(keys.MODEL_HISTORY, version.version)
            pipe.ltrim(keys.MODEL_HISTORY, 0, HISTORY_KEPT - 1)
            pipe.execute()
            return True
        except redis.WatchError:
            return False


def rollback(client: redis.Redis, to: str | None = None) -> tuple[ModelVersion, ModelVersion]:
    """Makes `to` (default: the version served before the current one) current again; the current one is
    marked rolled back, so self-training does not come back to it. Returns (from, to)."""
    current = current_version(client)
    if current is None:
        raise RegistryError("no model is published: nothing to roll back")
    if to is None:
        history = [
            v.decode() if isinstance(v, bytes) else v for v in client.lrange(keys.MODEL_HISTORY, 0, -1)
        ]
        earlier = [
            v
            for v in history
            if v != current.version and (rec := get_version(client, v)) and rec.status != "rolled_back"
        ]
        if not earlier:
            raise RegistryError(f"{current.version} is the only model served so far: nothing to roll back to")
        to = earlier[0]
    target = get_version(client, to)
    if target is None:
        raise RegistryError(f"unknown model version {to!r}")
    if target.version == current.version:
        raise RegistryError(f"{to} is already the current model")
    if target.status == "rejected" or not target.path:
        raise RegistryError(f"{to} was rejected by validation and cannot serve")
    if not model_files.has_file(client, target):
        raise RegistryError(f"{to}: its weights {target.path} are gone")
    with client.pipeline(transaction=True) as pipe:
        pipe.hset(
            keys.MODELS,
            current.version,
            current.model_copy(
                update={"status": "rolled_back", "reason": f"rolled back to {to}"}
            ).model_dump_json(),
        )
        pipe.hset(
            keys.MODELS, target.version, target.model_copy(update={"status": "serving"}).model_dump_json()
        )
        pipe.set(keys.CURRENT_MODEL, target.version)
        pipe.lpush(keys.MODEL_HISTORY, target.version)
        pipe.ltrim(keys.MODEL_HISTORY, 0, HISTORY_KEPT - 1)
        pipe.execute()
    return current, target


def publish_file(client: redis.Redis, path: Path, *, only_if_new: bool = False) -> ModelVersion:
    """Registers a detector file (validated by loading it) as a version and makes it current; with
    `only_if_new`, a version the site already knows is left as it is (self-training may have moved on)."""
    from models.detector.runtime import load_detector

    detector = load_detector(path, device="cpu", threads=1)
    existing = get_version(client, detector.info.version)
    current = current_version(client)
    if existing is not None and (
        only_if_new or (current is not None and current.version == existing.version)
    ):
        return existing
    version = ModelVersion(
        version=detector.info.version,
        path=str(path.resolve()),
        parent=detector.info.metadata.get("parent"),
        kind=detector.info.kind,
        metrics=dict(detector.info.metadata.get("metrics") or {}),
        place_silenced_cameras=sorted(detector.info.place_silenced_cameras),
    )
    version = model_files.store(client, version)
    if not publish(client, version, current.version if current else None):
        raise RegistryError("the current model changed meanwhile; try again")
    return version


def record_cycle(client: redis.Redis, cycle: schemas.RetrainCycle, cursors: dict[str, int]) -> None:
    """The cycle's summary (newest first, capped) and the last frame it covered per camera, together."""
    with client.pipeline(transaction=True) as pipe:
        pipe.lpush(keys.RETRAIN_CYCLES, cycle.model_dump_json())
        pipe.ltrim(keys.RETRAIN_CYCLES, 0, CYCLES_KEPT - 1)
        if cursors:
            pipe.hset(keys.RETRAIN_CURSOR, mapping=cursors)
        pipe.execute()


def recent_cycles(client: redis.Redis, count: int = 10) -> list[schemas.RetrainCycle]:
    """The newest retraining cycles, newest first."""
    return [
        schemas.RetrainCycle.model_validate_json(raw)
        for raw in client.lrange(keys.RETRAIN_CYCLES, 0, count - 1)
    ]
