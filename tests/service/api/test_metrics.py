"""GET /metrics over a real Redis holding what the workers write."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from service.api.app import create_app
from workers.bus import keys, schemas
from workers.bus.keys import DROPPED_FIELD
from workers.config import Settings
from workers.store import cameras, model_registry, retention

SECRET_SOURCE = "rtsp://admin:hunter2@10.0.0.5:554/live?token=abc123"


@pytest.fixture
def client(redis_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(redis_url=redis_url, heartbeat_s=1.0))) as test_client:
        yield test_client


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of a Prometheus text exposition."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


def write_site(client: redis.Redis, now: float) -> None:
    """Two cameras, frames read but not all acknowledged, scores behind, workers and an alert."""
    for camera, source in (("gate", SECRET_SOURCE), ("yard", "/videos/yard.mp4")):
        config = schemas.CameraConfig(id=camera, source=source)
        client.hset(keys.CAMERAS, camera, config.model_dump_json())
    status = schemas.CameraStatus(
        camera="gate", state="streaming", message=f"streaming {SECRET_SOURCE}", frames=42, reconnects=3,
        fps=9.5, last_frame_ts=now - 0.2,
    )  # fmt: skip
    client.hset(keys.CAMERA_STATUS, "gate", status.model_dump_json())
    frames = keys.frames_stream("gate")
    client.xgroup_create(frames, keys.INFERENCE_GROUP, id="0", mkstream=True)
    for seq in range(6):
        frame = schemas.FrameMessage(
            camera="gate", seq=seq, ts=now - 1 + seq * 0.1, session=0, width=4, height=2,
            gray=np.zeros(8, dtype=np.uint8).tobytes(),
        )  # fmt: skip
        client.xadd(frames, frame.to_fields())
    client.xreadgroup(keys.INFERENCE_GROUP, "w1", {frames: ">"}, count=4)
    score = schemas.ScoreMessage(
        camera="gate", seq=2, ts=now - 0.8, frame_id="1-0", score=0.75, raw=3.0, model="v7", anomalous=True
    )
    client.xadd(keys.scores_stream("gate"), score.to_fields())
    alert = schemas.Alert(
        id="gate-1-1", camera="gate", state="open", start_ts=now - 1, start_seq=1, last_seq=2,
        peak_score=0.75, peak_seq=2, peak_ts=now - 0.8, model="v7",
    )  # fmt: skip
    client.hset(keys.ALERTS, alert.id, alert.model_dump_json())
    client.zadd(keys.ALERTS_BY_TIME, {alert.id: 1})
    client.zadd(keys.alerts_by_camera("gate"), {alert.id: 1})
    client.xadd(keys.ALERT_EVENTS, schemas.AlertEvent.of("new", alert).to_fields())
    client.hset(
        keys.scorer_state_key("gate"),
        mapping={"tracker": json.dumps({"alert": alert.model_dump()}), DROPPED_FIELD: 5},
    )
    info = {
        "cameras": ["gate", "yard"], "frames_scored": 1234, "batches": 100, "last_batch_size": 8,
        "model": "v7", "lag_s": {"gate": 0.25},
    }  # fmt: skip
    for worker_id, role, ts, beat_info in (
        ("inf-1", "inference", now, info),
        ("ing-1", "ingest", now, {"cameras": 2}),
        ("ing-dead", "ingest", now - 60, {}),
    ):
        beat = schemas.WorkerHeartbeat(
            id=worker_id, role=role, pid=os.getpid(), host="test", started_ts=now - 100, ts=ts, info=beat_info
        )
        client.hset(keys.WORKERS, worker_id, beat.model_dump_json())


def test_metrics_report_cameras_streams_workers_and_alerts(
    client: TestClient, redis_client: redis.Redis
) -> None:
    now = time.time()
    write_site(redis_client, now)
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    assert value(found, "vigil_camera_fps", camera="gate") == 9.5
    assert value(found, "vigil_camera_frames_total", camera="gate") == 42
    assert value(found, "vigil_camera_reconnects_total", camera="gate") == 3
    assert value(found, "vigil_camera_state", camera="gate", state="streaming") == 1
    assert value(found, "vigil_camera_state", camera="gate", state="error") == 0
    assert value(found, "vigil_frames_buffered", camera="gate") == 6
    assert value(found, "vigil_frames_pending", camera="gate") == 4
    assert value(found, "vigil_frames_pending", camera="yard") == 0  # no consumer group yet
    assert value(found, "vigil_scoring_lag_seconds", camera="gate") == pytest.approx(0.3, abs=1e-6)
    assert value(found, "vigil_camera_score", camera="gate") == 0.75
    assert value(found, "vigil_frames_unscored_total", camera="gate") == 5
    assert value(found, "vigil_camera_alerts_total", camera="gate") == 1
    assert value(found, "vigil_camera_alert_open", camera="gate") == 1
    assert value(found, "vigil_camera_alert_open", camera="yard") == 0
    assert value(found, "vigil_alerts_total") == 1
    assert value(found, "vigil_alerts_open") == 1
    assert value(found, "vigil_alert_events_total") == 1
    assert value(found, "vigil_workers_alive", role="inference") == 1
    assert value(found, "vigil_workers_alive", role="ingest") == 1  # the other one is silent for 60 s
    assert value(found, "vigil_workers_alive", role="retrain") == 0
    assert value(found, "vigil_inference_frames_scored_total", worker="inf-1") == 1234
    assert value(found, "vigil_inference_batches_total", worker="inf-1") == 100
    assert value(found, "vigil_inference_last_batch_size", worker="inf-1") == 8
    assert value(found, "vigil_inference_cameras", worker="inf-1") == 2
    assert value(found, "vigil_inference_model_info", worker="inf-1", model="v7") == 1
    assert value(found, "vigil_inference_lag_seconds", worker="inf-1", camera="gate") == 0.25
    assert value(found, "vigil_camera_info", camera="yard", source="/videos/yard.mp4", enabled="true") == 1


def test_metrics_never_show_credentials(client: TestClient, redis_client: redis.Redis) -> None:
    write_site(redis_client, time.time())
    text = client.get("/metrics").text
    assert "hunter2" not in text and "abc123" not in text and "admin" not in text
    assert 'source="rtsp://***@10.0.0.5:554/live?token=***"' in text


def test_each_scrape_reads_redis_afresh(client: TestClient, redis_client: redis.Redis) -> None:
    write_site(redis_client, time.time())
    assert 'camera="yard"' in client.get("/metrics").text
    redis_client.hdel(keys.CAMERAS, "yard")
    text = client.get("/metrics").text
    assert 'camera="yard"' not in text and 'camera="gate"' in text


def test_metrics_of_an_empty_site(client: TestClient) -> None:
    found = samples(client.get("/metrics").text)
    assert value(found, "vigil_alerts_total") == 0
    assert value(found, "vigil_workers_alive", role="inference") == 0


def test_metrics_show_the_storage_the_retention_sweep_measured(
    client: TestClient, redis_client: redis.Redis
) -> None:
    assert "vigil_storage_bytes" not in client.get("/metrics").text  # nothing measured yet
    now = time.time()
    write_site(redis_client, now)
    retention.sweep(redis_client, Settings(), cameras.list_cameras(redis_client), now)
    found = samples(client.get("/metrics").text)
    assert value(found, "vigil_storage_bytes", camera="gate", kind="frames") > 0
    assert value(found, "vigil_site_storage_bytes", kind="alerts") > 0
    assert value(found, "vigil_storage_measured_timestamp_seconds") == pytest.approx(now, abs=60)


def test_a_camera_whose_view_moved_is_a_metric(client: TestClient, redis_client: redis.Redis) -> None:
    """An alert rule can page the installer: the served model's place map is silenced for camera yard."""
    version = schemas.ModelVersion(
        version="site-2", path="", kind="motion-appearance-place", place_silenced_cameras=["yard"]
    )
    assert model_registry.publish(redis_client, version, None)
    found = samples(client.get("/metrics").text)
    assert value(found, "vigil_camera_view_moved", camera="yard") == 1
    assert ("vigil_camera_view_moved", (("camera", "gate"),)) not in found
