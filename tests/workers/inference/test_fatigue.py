"""Alert fatigue controls in the running worker, over a real Redis: the cooldown and snoozes."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import redis

from tests.waiting import wait_for
from tests.workers.inference.test_worker import (
    add_camera,
    frame_message,
    scene,
    scored_seqs,
    write_frames,
)
from tests.workers.store.test_labels import write_alert
from workers.bus import keys, schemas
from workers.config import Settings
from workers.inference.worker import InferenceWorker
from workers.store.labels import FeedbackRequest, add_label
from workers.store.snoozes import snooze


def alert_events(client: redis.Redis) -> list[schemas.AlertEvent]:
    return [schemas.AlertEvent.from_fields(f) for _, f in client.xrange(keys.ALERT_EVENTS)]


def test_a_second_anomaly_within_the_cooldown_joins_the_first_alert(
    redis_client: redis.Redis, start_inference: Callable[[str], InferenceWorker]
) -> None:
    add_camera(redis_client, "cam1")
    # two anomalies 2.5 s apart; the default cooldown (10 s) makes them one alert, paged once
    rng = np.random.default_rng(0)
    for seq in range(130):
        square = seq in range(40, 60) or seq in range(85, 105)
        message = frame_message("cam1", seq, scene(seq, rng, square))
        redis_client.xadd(keys.frames_stream("cam1"), message.to_fields())
    start_inference("w1")
    wait_for(lambda: len(scored_seqs(redis_client, "cam1")) == 130)
    events = alert_events(redis_client)
    assert [e.type for e in events].count("new") == 1
    assert {e.alert_id for e in events} == {events[0].alert_id}
    alert = schemas.Alert.model_validate_json(redis_client.hget(keys.ALERTS, events[0].alert_id))
    assert alert.state == "closed" and alert.start_seq <= 44 and alert.end_seq >= 100


def test_a_snoozed_camera_raises_no_alert(
    redis_client: redis.Redis, start_inference: Callable[[str], InferenceWorker]
) -> None:
    add_camera(redis_client, "cam1")
    snooze(redis_client, "cam1", time.time() + 60, time.time())
    write_frames(redis_client, "cam1", anomalous=range(60, 80), count=110)
    start_inference("w1")
    wait_for(lambda: len(scored_seqs(redis_client, "cam1")) == 110)
    assert alert_events(redis_client) == []


def test_a_snoozed_zone_raises_no_alert(
    redis_client: redis.Redis, start_inference: Callable[[str], InferenceWorker]
) -> None:
    add_camera(redis_client, "cam1")
    # the square races along rows 20..31 of 64: a wide band round them holds its motion too
    band = schemas.Zone(points=[(0.0, 0.1), (1.0, 0.1), (1.0, 0.75), (0.0, 0.75)])
    snooze(redis_client, "cam1", time.time() + 60, time.time(), zone=band)
    write_frames(redis_client, "cam1", anomalous=range(60, 80), count=110)
    start_inference("w1")
    wait_for(lambda: len(scored_seqs(redis_client, "cam1")) == 110)
    assert alert_events(redis_client) == []


def test_alerts_marked_normal_raise_their_camera_s_threshold_to_their_peak_up_to_the_ceiling(
    redis_client: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    from tests.models.detector.test_runtime import tiny_detector

    add_camera(redis_client, "cam1")
    camera = schemas.CameraConfig.model_validate_json(redis_client.hget(keys.CAMERAS, "cam1"))
    worker = InferenceWorker(Settings(data_dir=tmp_path), redis_url, detector=tiny_detector(0), worker_id="w")
    learned = worker.settings.alerts.threshold
    worker.refresh()  # takes the camera
    assert worker.slots["cam1"].tracker.config.threshold == learned  # no labels: as configured
    write_alert(redis_client, "weak", start_seq=10, last_seq=20, closed=True, peak=0.41)
    add_label(redis_client, FeedbackRequest(alert_id="weak", label="normal"))
    worker.refresh()  # the labels are read again every REFRESH_S: not yet
    assert worker.slots["cam1"].tracker.config.threshold == learned
    worker.label_thresholds._next_read = 0.0  # due
    worker.refresh()
    assert worker.slots["cam1"].tracker.config.threshold == pytest.approx(0.42)  # it would not page again
    write_alert(redis_client, "strong", start_seq=30, last_seq=40, closed=True, peak=0.9)
    add_label(redis_client, FeedbackRequest(alert_id="strong", label="normal"))
    worker.label_thresholds._next_read = 0.0
    worker.refresh()
    assert worker.slots["cam1"].tracker.config.threshold == worker.settings.alerts.label_ceiling
    write_alert(redis_client, "true", start_seq=50, last_seq=60, closed=True, peak=0.46)
    add_label(redis_client, FeedbackRequest(alert_id="true", label="abnormal"))
    worker.label_thresholds._next_read = 0.0
    worker.refresh()
    assert worker.slots["cam1"].tracker.config.threshold == pytest.approx(0.45)  # a confirmed one pages
    worker.release_all()
    off = InferenceWorker(
        Settings(data_dir=tmp_path, alerts={"label_ceiling": 0.0}), redis_url, detector=tiny_detector(0)
    )
    assert off._new_slot(camera, 10.0).tracker.config.threshold == learned
