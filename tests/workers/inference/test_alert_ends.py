"""An alert open when its camera stops, reconnects or is disabled gets its `end` event, with the reason."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import redis

from tests.waiting import wait_for
from tests.workers.inference.test_worker import add_camera, frame_message, scene, scored_seqs
from workers.bus import keys, schemas
from workers.inference.worker import InferenceWorker
from workers.store.cameras import put_camera


def write_session(client: redis.Redis, seqs: range, session: int, anomalous: range) -> None:
    rng = np.random.default_rng(session)
    for seq in seqs:
        message = frame_message("cam1", seq, scene(seq, rng, square=seq in anomalous))
        client.xadd(keys.frames_stream("cam1"), message.model_copy(update={"session": session}).to_fields())


def events(client: redis.Redis) -> list[schemas.AlertEvent]:
    found = [schemas.AlertEvent.from_fields(f) for _, f in client.xrange(keys.ALERT_EVENTS)]
    return [event for event in found if event.type != "update"]


def test_an_alert_open_at_a_reconnect_ends_before_the_new_session(
    redis_client: redis.Redis, start_inference: Callable[[str], InferenceWorker]
) -> None:
    add_camera(redis_client, "cam1")
    write_session(redis_client, range(80), session=0, anomalous=range(50, 80))  # open at the drop
    write_session(redis_client, range(80, 140), session=1, anomalous=range(0))
    start_inference("w1")
    wait_for(lambda: len(scored_seqs(redis_client, "cam1")) == 140)
    assert [e.type for e in events(redis_client)] == ["new", "end"]
    ended = events(redis_client)[1].parsed_alert()
    assert ended.state == "closed" and ended.end_seq is not None and ended.end_seq < 80
    assert ended.end_reason is not None and "reconnected" in ended.end_reason


@pytest.mark.parametrize("stop", ["reconnecting", "disabled"])
def test_an_alert_open_when_the_camera_stops_ends_with_the_reason(
    stop: str, redis_client: redis.Redis, start_inference: Callable[[str], InferenceWorker]
) -> None:
    add_camera(redis_client, "cam1")
    write_session(redis_client, range(80), session=0, anomalous=range(50, 80))
    start_inference("w1")
    wait_for(lambda: len(scored_seqs(redis_client, "cam1")) == 80)
    assert [e.type for e in events(redis_client)] == ["new"]
    if stop == "disabled":
        config = schemas.CameraConfig.model_validate_json(redis_client.hget(keys.CAMERAS, "cam1"))
        put_camera(redis_client, config.model_copy(update={"enabled": False}))
    else:
        status = schemas.CameraStatus(camera="cam1", state="reconnecting", message="stream ended")
        redis_client.hset(keys.CAMERA_STATUS, "cam1", status.model_dump_json())
    wait_for(lambda: len(events(redis_client)) == 2, 5)
    ended = events(redis_client)[1]
    assert ended.type == "end" and ended.alert_id == events(redis_client)[0].alert_id
    reason = ended.parsed_alert().end_reason
    assert reason == ("camera disabled" if stop == "disabled" else "camera reconnecting: stream ended")
    stored = schemas.Alert.model_validate_json(redis_client.hget(keys.ALERTS, ended.alert_id))
    assert stored.state == "closed" and stored.end_reason == reason
