"""Event categories with a real Redis: alerts described from their buffered peak frames, operators'
categories kept, the others predicted, and the API showing them."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import redis
from fastapi.testclient import TestClient

from models.detector.fitting import FitConfig, train_detector
from models.detector.streams import DetectorConfig
from service.api.app import create_app
from tests.workers.inference.test_worker import BACKGROUND, HEIGHT, WIDTH, add_camera, frame_message
from workers.bus import keys, schemas
from workers.config import Settings
from workers.inference.categories import categorize_alerts, describe_new_alerts
from workers.store.labels import FeedbackRequest, add_label

# three events of two kinds: a small bright thing racing across, a large dark one creeping
EVENTS = {"a1": (20, "bright"), "b1": (60, "dark"), "a2": (100, "bright")}


def event_frame(seq: int, rng: np.random.Generator) -> np.ndarray:
    frame = np.clip(BACKGROUND + rng.normal(0, 2, BACKGROUND.shape), 0, 255).astype(np.uint8)
    for start, kind in EVENTS.values():
        if start <= seq < start + 10:
            if kind == "bright":
                x = 4 * (seq - start)
                cv2.rectangle(frame, (x, 20), (x + 8, 28), 250, -1)
            else:
                x = seq - start
                cv2.rectangle(frame, (30 + x, 10), (60 + x, 50), 15, -1)
    return frame


def write_footage(client: redis.Redis) -> None:
    rng = np.random.default_rng(0)
    for seq in range(130):
        frame = frame_message("cam1", seq, event_frame(seq, rng))
        entry = client.xadd(keys.frames_stream("cam1"), frame.to_fields()).decode()
        score = schemas.ScoreMessage(
            camera="cam1",
            seq=seq,
            ts=frame.ts,
            frame_id=entry,
            score=0.1,
            raw=0.0,
            model="m",
            anomalous=False,
        )
        client.xadd(keys.scores_stream("cam1"), score.to_fields())
    for alert_id, (start, _) in EVENTS.items():
        alert = schemas.Alert(
            id=alert_id,
            camera="cam1",
            state="closed",
            start_ts=1000 + start / 10,
            end_ts=1001 + start / 10,
            start_seq=start,
            end_seq=start + 9,
            last_seq=start + 9,
            peak_score=0.9,
            peak_seq=start + 5,
            peak_ts=1000.5 + start / 10,
            model="m",
        )
        client.hset(keys.ALERTS, alert_id, alert.model_dump_json())
        client.zadd(keys.ALERTS_BY_TIME, {alert_id: alert.start_ts * 1000})
        client.zadd(keys.alerts_by_camera("cam1"), {alert_id: alert.start_ts * 1000})


def test_categories_follow_the_operators_and_are_shown_by_the_api(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    rng = np.random.default_rng(1)
    quiet = np.stack(
        [np.clip(BACKGROUND + rng.normal(0, 2, BACKGROUND.shape), 0, 255).astype(np.uint8) for _ in range(60)]
    )
    detector = train_detector(
        {"v": quiet}, DetectorConfig(height=HEIGHT, width=WIDTH, bank_size=64), {}, FitConfig()
    ).detector
    add_camera(redis_client, "cam1")
    write_footage(redis_client)
    assert describe_new_alerts(redis_client, detector) == 3
    assert describe_new_alerts(redis_client, detector) == 0  # described once per model
    categorize_alerts(redis_client, detector.info.version)
    assert not redis_client.hlen(keys.ALERT_CATEGORIES)  # nothing labelled yet: nothing to predict from
    add_label(redis_client, FeedbackRequest(alert_id="a1", label="abnormal", category="bicycle"))
    add_label(redis_client, FeedbackRequest(alert_id="b1", label="abnormal", category="cart"))
    categorize_alerts(redis_client, detector.info.version)
    recorded = {
        key.decode(): schemas.AlertCategory.model_validate_json(raw)
        for key, raw in redis_client.hgetall(keys.ALERT_CATEGORIES).items()
    }
    assert (recorded["a1"].category, recorded["a1"].source, recorded["a1"].confidence) == (
        "bicycle",
        "operator",
        1.0,
    )
    assert recorded["b1"].category == "cart" and recorded["a2"].source == "predicted"
    assert recorded["a2"].category == "bicycle" and recorded["a2"].examples == 2
    with TestClient(create_app(Settings(redis_url=redis_url))) as api:
        shown = {item["id"]: item for item in api.get("/api/alerts").json()["items"]}
        assert shown["a2"]["category"] == "bicycle" and 0 < shown["a2"]["category_confidence"] <= 1
        assert api.get("/api/alerts/b1").json()["category"] == "cart"
