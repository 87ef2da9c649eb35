"""The retention sweep against a real Redis: what is past its span goes, what is within stays, open and
labelled alerts stay, a camera's own span wins over the site's, the storage is measured."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import redis

from tests.waiting import wait_for
from tests.workers.conftest import ingest_settings
from workers.bus import keys, schemas
from workers.config import RetentionSettings, Settings
from workers.inference.alert_writes import queue_alert_event
from workers.ingest.worker import IngestWorker
from workers.store import labels, retention
from workers.store.cameras import put_camera
from workers.store.error_maps import encode_error_map

HOUR = 3600.0
DAY = 86400.0
SETTINGS = Settings(retention=RetentionSettings(display_s=HOUR, alerts_s=30 * DAY))


def add_display(client: redis.Redis, camera: str, ts: float) -> None:
    message = schemas.DisplayMessage(camera=camera, seq=int(ts), ts=ts, jpeg=b"\xff\xd8" + bytes(2000))
    client.xadd(keys.display_stream(camera), message.to_fields(), id=f"{int(ts * 1000)}-0")


def display_times(client: redis.Redis, camera: str) -> list[float]:
    return [float(fields[b"ts"]) for _, fields in client.xrange(keys.display_stream(camera))]


def add_alert(client: redis.Redis, alert_id: str, start_ts: float, end_ts: float | None) -> schemas.Alert:
    alert = schemas.Alert(
        id=alert_id, camera="cam1", state="open" if end_ts is None else "closed", start_ts=start_ts,
        end_ts=end_ts, start_seq=1, last_seq=5, peak_score=0.9, peak_seq=3, peak_ts=start_ts, model="m",
    )  # fmt: skip
    with client.pipeline(transaction=False) as pipe:
        queue_alert_event(pipe, "new" if end_ts is None else "end", alert)
        pipe.hset(
            keys.ALERT_DESCRIPTORS,
            alert_id,
            schemas.AlertDescriptor(model="m", vector=[1.0]).model_dump_json(),
        )
        pipe.hset(keys.ALERT_CATEGORIES, alert_id, schemas.AlertCategory(category="x", confidence=0.5, source="predicted").model_dump_json())  # fmt: skip
        pipe.execute()
    return alert


def test_display_frames_past_their_span_go_and_a_cameras_own_span_wins(redis_client: redis.Redis) -> None:
    now = time.time()
    put_camera(redis_client, schemas.CameraConfig(id="site", source="test://"))
    short = schemas.CameraRetention(display_s=600.0)
    put_camera(redis_client, schemas.CameraConfig(id="short", source="test://", retention=short))
    for camera in ("site", "short"):
        for age in (2 * HOUR, 0.5 * HOUR, 60.0):
            add_display(redis_client, camera, now - age)
    cameras = [schemas.CameraConfig(id="site", source="test://"), schemas.CameraConfig(id="short", source="test://", retention=short)]  # fmt: skip
    result = retention.sweep(redis_client, SETTINGS, cameras, now)
    assert display_times(redis_client, "site") == [now - 0.5 * HOUR, now - 60.0]
    assert display_times(redis_client, "short") == [now - 60.0]
    assert result.display_trimmed == 3
    again = retention.sweep(redis_client, SETTINGS, cameras, now)  # idempotent: nothing more to remove
    assert again.removed == 0 and display_times(redis_client, "site") == [now - 0.5 * HOUR, now - 60.0]


def test_frames_of_a_removed_camera_age_out_and_a_registered_cameras_stay(redis_client: redis.Redis) -> None:
    now = time.time()
    old_ms = int((now - 2 * SETTINGS.analysis.buffer_seconds) * 1000)
    for camera in ("kept", "removed"):
        frame = schemas.FrameMessage(
            camera=camera, seq=0, ts=now, session=0, width=2, height=2, gray=bytes(4)
        )
        redis_client.xadd(keys.frames_stream(camera), frame.to_fields(), id=f"{old_ms}-0")
    result = retention.sweep(redis_client, SETTINGS, [schemas.CameraConfig(id="kept", source="test://")], now)
    assert result.frames_trimmed == 1
    assert redis_client.xlen(keys.frames_stream("kept")) == 1  # the retraining window: capped by count
    assert redis_client.xlen(keys.frames_stream("removed")) == 0


def test_old_closed_alerts_go_with_their_events_and_open_and_labelled_ones_stay(
    redis_client: redis.Redis,
) -> None:
    now = time.time()
    put_camera(redis_client, schemas.CameraConfig(id="cam1", source="test://"))
    old = now - 40 * DAY
    add_alert(redis_client, "expired", old, old + 10)
    add_alert(redis_client, "open", old, None)
    add_alert(redis_client, "labelled", old, old + 10)
    # the sweep runs 31 days on: the alerts' events (written now) are past the span, "recent" is not
    later = now + 31 * DAY
    add_alert(redis_client, "recent", later - DAY, later - DAY + 10)
    labels.add_label(
        redis_client, labels.FeedbackRequest(alert_id="labelled", label="abnormal", category="car")
    )
    events = redis_client.xlen(keys.ALERT_EVENTS)
    result = retention.sweep(
        redis_client, SETTINGS, [schemas.CameraConfig(id="cam1", source="test://")], later
    )
    assert result.alerts_removed == 1 and result.events_trimmed == events
    assert sorted(m.decode() for m in redis_client.zrange(keys.ALERTS_BY_TIME, 0, -1)) == [
        "labelled",
        "open",
        "recent",
    ]
    assert redis_client.hget(keys.ALERTS, "expired") is None
    assert redis_client.hget(keys.ALERT_DESCRIPTORS, "expired") is None
    assert redis_client.hget(keys.ALERT_CATEGORIES, "expired") is None
    assert redis_client.zscore(keys.alerts_by_camera("cam1"), "expired") is None
    assert redis_client.hget(keys.ALERT_DESCRIPTORS, "labelled") is not None
    assert redis_client.xlen(keys.ALERT_EVENTS) == 0


def test_labels_are_kept_forever_by_default_and_for_their_span_when_one_is_set(
    redis_client: redis.Redis,
) -> None:
    put_camera(redis_client, schemas.CameraConfig(id="cam1", source="test://"))
    first, _ = labels.add_label(redis_client, labels.FeedbackRequest(camera="cam1", start_seq=0, end_seq=9, label="normal"))  # fmt: skip
    time.sleep(0.05)
    cutoff = time.time()
    second, _ = labels.add_label(redis_client, labels.FeedbackRequest(camera="cam1", start_seq=20, end_seq=29, label="abnormal"))  # fmt: skip
    cameras = [schemas.CameraConfig(id="cam1", source="test://")]
    retention.sweep(redis_client, SETTINGS, cameras, time.time() + 10 * 365 * DAY)
    assert [label.id for label in labels.camera_labels(redis_client, "cam1")] == [first.id, second.id]
    assert retention.remove_labels(redis_client, cutoff) == 1
    assert [label.id for label in labels.camera_labels(redis_client, "cam1")] == [second.id]
    assert labels.frame_labels(redis_client, "cam1", 0, 29) == dict.fromkeys(range(20, 30), "abnormal")
    spanned = Settings(retention=RetentionSettings(labels_s=DAY))
    assert retention.sweep(redis_client, spanned, cameras, time.time() + 2 * DAY).labels_removed == 1
    assert labels.camera_labels(redis_client, "cam1") == []


def test_storage_is_measured_per_camera_and_kind(redis_client: redis.Redis) -> None:
    now = time.time()
    for index in range(10):
        add_display(redis_client, "cam1", now - 10 + index)
    redis_client.set(keys.error_map_key("cam1", 1), encode_error_map(np.random.default_rng(0).random((60, 90), np.float32)))  # fmt: skip
    redis_client.set(keys.heat_bucket_key("cam1", int(now // 60)), b"x" * 500)
    add_alert(redis_client, "a1", now, now + 5)
    retention.sweep(redis_client, SETTINGS, [schemas.CameraConfig(id="cam1", source="test://")], now)
    report = retention.read_storage(redis_client)
    assert report is not None
    kinds = report.cameras["cam1"]
    assert kinds["display"] > 10 * 2000 and kinds["error_maps"] > 1000 and kinds["heat"] > 500
    assert "other" not in kinds  # the camera's alert index lives in the alerts' slot, counted there
    assert report.site["alerts"] > 0 and report.site["alert_events"] > 0 and report.site["labels"] == 0


def test_a_cameras_own_spans_resolve_over_the_sites() -> None:
    own = schemas.CameraConfig(
        id="c", source="x", retention=schemas.CameraRetention(heat_s=7200.0, frames_s=60.0)
    )
    spans = SETTINGS.retention.for_camera(own)
    assert (spans.display_s, spans.error_maps_s, spans.heat_s) == (HOUR, 3600.0, 7200.0)
    assert SETTINGS.analysis.for_camera(own).buffer_frames == 600  # 10 fps for 60 s


def test_the_ingest_worker_sweeps_and_keeps_snapshots_for_the_display_span(
    redis_url: str, redis_client: redis.Redis, video_clip: object, run_worker: Callable[..., IngestWorker]
) -> None:
    settings = ingest_settings(redis_url)
    settings.retention = RetentionSettings(display_s=600.0, sweep_interval_s=0.2)
    put_camera(redis_client, schemas.CameraConfig(id="door", source=str(video_clip), loop=True))
    add_display(redis_client, "gone", time.time() - 2 * HOUR)
    run_worker(IngestWorker(settings, redis_url))
    wait_for(lambda: redis_client.exists(keys.snapshot_key("door")))
    assert 0 < redis_client.ttl(keys.snapshot_key("door")) <= 600
    wait_for(lambda: redis_client.xlen(keys.display_stream("gone")) == 0)
    wait_for(lambda: "door" in (retention.read_storage(redis_client) or schemas.StorageReport()).cameras)
