"""The site-wide writes that span several keys in one transaction work on a real Redis Cluster: their keys
share a group's slot (labels, model versions with their files, retraining cycles); and the API's reads
across cameras (one pipeline) and the retention sweep (a SCAN over every node) work there too."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.workers.inference.test_worker import add_camera, write_frames
from tests.workers.store.test_model_files import publish_tiny
from workers.bus import schemas
from workers.bus.connection import connect
from workers.config import Settings
from workers.inference.serving import load_serving_detector
from workers.store import alerts, frames, labels, model_registry, retention

pytestmark = pytest.mark.cluster


def test_labels_models_and_cycles_on_a_cluster(redis_cluster_url: str, tmp_path: Path) -> None:
    client = connect(redis_cluster_url)
    add_camera(client, "gate")
    request = labels.FeedbackRequest(camera="gate", start_seq=10, end_seq=20, label="abnormal")
    label, created = labels.add_label(client, request)
    assert created and labels.camera_labels(client, "gate") == [label]
    assert labels.delete_label(client, label.id) == label and labels.camera_labels(client, "gate") == []

    publish_tiny(client, Settings(data_dir=tmp_path / "retrain-host"), "site-v1", seed=0)
    publish_tiny(client, Settings(data_dir=tmp_path / "retrain-host"), "site-v2", seed=1)
    assert model_registry.rollback(client)[1].version == "site-v1"
    remote = Settings(data_dir=tmp_path / "inference-host")
    assert load_serving_detector(remote, client)[0].info.version == "site-v1"

    cycle = schemas.RetrainCycle(
        started_ts=1.0, seconds=2.0, cameras=["gate"], window_frames=10, accepted=False, reason="test"
    )
    model_registry.record_cycle(client, cycle, {"gate": 10})
    assert model_registry.recent_cycles(client) == [cycle]


def test_what_the_api_and_the_retention_sweep_read_across_cameras_works_on_a_cluster(
    redis_cluster_url: str,
) -> None:
    client = connect(redis_cluster_url)
    cameras = [f"cam{i}" for i in range(6)]
    for camera in cameras:
        add_camera(client, camera)
        write_frames(client, camera, anomalous=range(0), count=3)
    readings = frames.camera_readings(client, cameras)
    assert {camera: reading.frames_buffered for camera, reading in readings.items()} == dict.fromkeys(
        cameras, 3
    )
    assert alerts.list_alerts(client, limit=10).alerts == []
    assert alerts.last_alert_event_id(client) == "0-0"
    configs = [schemas.CameraConfig(id=camera, source="test://frames") for camera in cameras]
    retention.sweep(client, Settings(), configs, time.time())  # a SCAN of every node, the alerts' slot
    report = retention.read_storage(client)
    assert report is not None and set(report.cameras) == set(cameras)
