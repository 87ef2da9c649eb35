"""Alert fatigue controls in the running worker, over a real Redis: the cooldown and snoozes."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import redis

from tests.workers.inference.test_worker import (
    add_camera,
    frame_message,
    scene,
    scored_seqs,
    wait_for,
    write_frames,
)
from workers.bus import keys
from workers.inference.worker import InferenceWorker
from workers.store.snoozes import snooze


def alert_events(client: redis.Redis) -> list[keys.AlertEvent]:
    return [keys.AlertEvent.from_fields(f) for _, f in client.xrange(keys.ALERT_EVENTS)]


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
    alert = keys.Alert.model_validate_json(redis_client.hget(keys.ALERTS, events[0].alert_id))
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
    band = keys.Zone(points=[(0.0, 0.1), (1.0, 0.1), (1.0, 0.75), (0.0, 0.75)])
    snooze(redis_client, "cam1", time.time() + 60, time.time(), zone=band)
    write_frames(redis_client, "cam1", anomalous=range(60, 80), count=110)
    start_inference("w1")
    wait_for(lambda: len(scored_seqs(redis_client, "cam1")) == 110)
    assert alert_events(redis_client) == []
