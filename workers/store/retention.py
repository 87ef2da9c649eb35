"""Retention: removing what is past its span, and measuring what the site holds.

Media with a TTL (error maps, heat buckets, the latest snapshot) expire by themselves. The sweep trims each
camera's display stream to its span, the frame and score streams of cameras no longer registered (a
registered camera's are capped by count as they are written: the retraining window), closed alerts with
their events, and, when a span is set, operator labels. It is idempotent (a second run finds nothing),
works in batches, and keeps open alerts and the alerts operators labelled (their categories are learned).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

import redis

from workers.bus import keys, schemas
from workers.config import Settings
from workers.store import labels

log = logging.getLogger(__name__)

SCAN_BATCH = 1000
ALERT_BATCH = 500
MAX_REMOVED_PER_SWEEP = 10_000  # alerts or labels: a backlog is worked off over several sweeps

# per-camera key kinds as /metrics labels them (keys.parse_camera_key)
CAMERA_KINDS = {
    "frames": "frames",
    "scores": "scores",
    "display": "display",
    "snapshot": "snapshot",
    "errmap": "error_maps",
    "heat": "heat",
}
SITE_KINDS = {
    "alerts": (keys.ALERTS, keys.ALERTS_BY_TIME, keys.ALERT_DESCRIPTORS, keys.ALERT_CATEGORIES),
    "alert_events": (keys.ALERT_EVENTS,),
    "labels": (keys.FEEDBACK_LABELS, keys.FEEDBACK_LABELS_BY_ID),
}


@dataclass
class SweepResult:
    display_trimmed: int = 0
    frames_trimmed: int = 0  # frames and scores of cameras no longer registered
    alerts_removed: int = 0
    events_trimmed: int = 0
    labels_removed: int = 0
    storage: schemas.StorageReport = field(default_factory=schemas.StorageReport)

    @property
    def removed(self) -> int:
        return (
            self.display_trimmed
            + self.frames_trimmed
            + self.alerts_removed
            + self.events_trimmed
            + self.labels_removed
        )


def _min_id(cutoff_ts: float) -> int:
    """Stream ids start with their write time in ms: entries below this one were written before cutoff."""
    return max(int(cutoff_ts * 1000), 0)


def _camera_keys(client: redis.Redis) -> Iterator[list[tuple[str, str, str]]]:
    """Batches of (key, camera, kind) of every per-camera key."""
    batch: list[tuple[str, str, str]] = []
    for raw in client.scan_iter(match=keys.CAMERA_KEYS_PATTERN, count=SCAN_BATCH):
        key = raw.decode()
        parsed = keys.parse_camera_key(key)
        if parsed is not None:
            batch.append((key, *parsed))
        if len(batch) >= SCAN_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def measure_storage(client: redis.Redis) -> schemas.StorageReport:
    """Bytes of Redis memory per camera and kind, and of the site's records (MEMORY USAGE, sampled for
    large streams; one SCAN over the per-camera keys)."""
    cameras: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for batch in _camera_keys(client):
        pipe = client.pipeline(transaction=False)
        for key, _, _ in batch:
            pipe.memory_usage(key)
        for (_, camera, kind), size in zip(batch, pipe.execute(), strict=True):
            cameras[camera][CAMERA_KINDS.get(kind, "other")] += int(size or 0)  # None: expired meanwhile
    pipe = client.pipeline(transaction=False)
    for names in SITE_KINDS.values():
        for name in names:
            pipe.memory_usage(name)
    # the cameras' alert and label indexes live in the site's slots (keys.ALERTS_GROUP, FEEDBACK_GROUP)
    indexes = {camera: _camera_indexes(camera) for camera in cameras}
    for names in indexes.values():
        for name in names.values():
            pipe.memory_usage(name)
    sizes = iter(pipe.execute())
    site = {kind: sum(int(next(sizes) or 0) for _ in names) for kind, names in SITE_KINDS.items()}
    for names in indexes.values():
        for kind in names:
            site[kind] += int(next(sizes) or 0)
    return schemas.StorageReport(cameras={cam: dict(kinds) for cam, kinds in cameras.items()}, site=site)


def _camera_indexes(camera: str) -> dict[str, str]:
    """A camera's index keys kept with the site's records, by the site kind they count as."""
    return {"alerts": keys.alerts_by_camera(camera), "labels": keys.feedback_labels_by_camera(camera)}


def read_storage(client: redis.Redis) -> schemas.StorageReport | None:
    raw = client.get(keys.STORAGE)
    return schemas.StorageReport.model_validate_json(raw) if raw is not None else None


def trim_camera_media(
    client: redis.Redis, settings: Settings, registered: dict[str, schemas.CameraConfig], now_ts: float
) -> tuple[int, int]:
    """Display frames past their camera's span; frames and scores of unregistered cameras past the site's
    buffer. Returns (display entries, frame and score entries) removed."""
    streams: dict[str, set[str]] = defaultdict(set)
    for batch in _camera_keys(client):
        for _, camera, kind in batch:
            if kind in ("display", "frames", "scores"):
                streams[camera].add(kind)
    display = media = 0
    for camera, kinds in sorted(streams.items()):
        config = registered.get(camera)
        display_s = (
            settings.retention.for_camera(config).display_s
            if config is not None
            else settings.retention.display_s
        )
        if "display" in kinds:
            display += client.xtrim(
                keys.display_stream(camera), minid=_min_id(now_ts - display_s), approximate=False
            )
        if config is None:
            cutoff = _min_id(now_ts - settings.analysis.buffer_seconds)
            for stream in (keys.frames_stream(camera), keys.scores_stream(camera)):
                media += client.xtrim(stream, minid=cutoff, approximate=False)
    return display, media


def _labelled_alerts(client: redis.Redis) -> set[str]:
    """Alerts an operator label names: kept as long as their label (they teach the category head)."""
    return {
        label.alert_id
        for raw in client.hvals(keys.FEEDBACK_LABELS)
        if (label := schemas.FeedbackLabel.model_validate_json(raw)).alert_id is not None
    }


def remove_alerts(client: redis.Redis, cutoff_ts: float) -> int:
    """Closed alerts that ended before cutoff_ts, with their descriptors and categories; open and
    labelled alerts stay. At most MAX_REMOVED_PER_SWEEP a call, ALERT_BATCH at a time."""
    removed = 0
    offset = 0
    keep: set[str] | None = None
    # an alert that ended before the cutoff started before it too: only those are read
    while removed < MAX_REMOVED_PER_SWEEP:
        ids = client.zrangebyscore(
            keys.ALERTS_BY_TIME, "-inf", f"({_min_id(cutoff_ts)}", start=offset, num=ALERT_BATCH
        )
        if not ids:
            break
        if keep is None:
            keep = _labelled_alerts(client)
        expired: list[schemas.Alert] = []
        missing: list[bytes] = []
        for alert_id, raw in zip(ids, client.hmget(keys.ALERTS, ids), strict=True):
            if raw is None:
                missing.append(alert_id)  # an index entry without its record: dropped from the index
                continue
            alert = schemas.Alert.model_validate_json(raw)
            ended = alert.end_ts is not None and alert.end_ts < cutoff_ts
            if alert.state == "closed" and ended and alert.id not in keep:
                expired.append(alert)
        offset += len(ids) - len(expired) - len(missing)
        with client.pipeline(transaction=True) as pipe:
            for alert in expired:
                pipe.hdel(keys.ALERTS, alert.id)
                pipe.hdel(keys.ALERT_DESCRIPTORS, alert.id)
                pipe.hdel(keys.ALERT_CATEGORIES, alert.id)
                pipe.zrem(keys.alerts_by_camera(alert.camera), alert.id)
                pipe.zrem(keys.ALERTS_BY_TIME, alert.id)
            if missing:
                pipe.zrem(keys.ALERTS_BY_TIME, *missing)
            pipe.execute()
        removed += len(expired)
    return removed


def remove_labels(client: redis.Redis, cutoff_ts: float) -> int:
    """Labels created before cutoff_ts, oldest first, each through labels.delete_label (as DELETE
    /api/feedback/{id}: the verdicts of earlier labels apply again). At most MAX_REMOVED_PER_SWEEP."""
    removed = 0
    while removed < MAX_REMOVED_PER_SWEEP:
        # ids rise with time: the oldest come first, and the first one within the span ends the pass
        ids = [raw.decode() for raw in client.zrange(keys.FEEDBACK_LABELS_BY_ID, 0, ALERT_BATCH - 1)]
        found = {label.id: label for label in labels.labels_of(client, ids)}
        expired = []
        for label_id in ids:
            label = found.get(label_id)
            if label is not None and label.created_ts >= cutoff_ts:
                break
            expired.append(label_id)
        for label_id in expired:
            if labels.delete_label(client, label_id) is None:
                client.zrem(keys.FEEDBACK_LABELS_BY_ID, label_id)  # an index entry without its label
        removed += len(expired)
        if len(expired) < len(ids) or not ids:
            break
    return removed


def sweep(
    client: redis.Redis, settings: Settings, cameras: list[schemas.CameraConfig], now_ts: float
) -> SweepResult:
    """One retention pass over the whole site (`cameras`: those registered); the storage it leaves is
    stored for /metrics."""
    retention = settings.retention
    registered = {config.id: config for config in cameras}
    result = SweepResult()
    result.display_trimmed, result.frames_trimmed = trim_camera_media(client, settings, registered, now_ts)
    result.alerts_removed = remove_alerts(client, now_ts - retention.alerts_s)
    result.events_trimmed = client.xtrim(
        keys.ALERT_EVENTS, minid=_min_id(now_ts - retention.alerts_s), approximate=False
    )
    if retention.labels_s > 0:
        result.labels_removed = remove_labels(client, now_ts - retention.labels_s)
    result.storage = measure_storage(client)
    client.set(keys.STORAGE, result.storage.model_dump_json())
    return result
