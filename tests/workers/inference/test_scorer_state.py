"""The scorer state a takeover resumes from: a checkpoint plus the log of raw scores since, exactly."""

from __future__ import annotations

import numpy as np
import redis

from models.detector.base import DetectorInfo
from models.scoring.camera import CameraStream
from workers.bus import keys
from workers.inference import scorer_state

INFO = DetectorInfo("test", "v1", 8, 8, 0, {"calibration": {"median": 1.0, "scale": 0.5}})


def test_checkpoint_and_log_restore_the_stream_exactly(redis_client: redis.Redis) -> None:
    stream = CameraStream(INFO)
    rng = np.random.default_rng(0)
    for batch in range(6):
        raws = [float(raw) for raw in rng.normal(1.0, 0.3, 7)]
        for raw in raws:
            stream.score(raw)
        with redis_client.pipeline(transaction=True) as pipe:
            scorer_state.queue_save(pipe, "cam", stream, raws, checkpoint=batch == 2)
            pipe.execute()
    assert redis_client.llen(keys.scorer_log_key("cam")) == 3 * 7  # emptied at the checkpoint
    saved = redis_client.hgetall(keys.scorer_state_key("cam"))
    assert scorer_state.has_checkpoint(saved)
    resumed = CameraStream(INFO)
    scorer_state.load(redis_client, "cam", saved, resumed)
    assert resumed.scorer.state_dict() == stream.scorer.state_dict()
    for raw in (0.7, 1.9, 1.1):
        assert resumed.score(raw) == stream.score(raw)


def test_a_camera_without_a_checkpoint_starts_afresh(redis_client: redis.Redis) -> None:
    assert not scorer_state.has_checkpoint(redis_client.hgetall(keys.scorer_state_key("new")))
