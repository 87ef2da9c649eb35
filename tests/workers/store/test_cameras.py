"""The cameras' data access: how large their sources' frames are, and how fast their frames come."""

from __future__ import annotations

import redis

from workers.bus import keys, schemas
from workers.store.cameras import analysis_fps, source_size


def write_status(client: redis.Redis, camera: str, size: tuple[int, int] | None, fps: float = 10.0) -> None:
    status = schemas.CameraStatus(camera=camera, state="streaming", source_size=size, fps=fps)
    client.hset(keys.CAMERA_STATUS, camera, status.model_dump_json())


def test_the_source_size_of_cameras_is_the_smallest_and_unknown_until_each_streamed(
    redis_client: redis.Redis,
) -> None:
    write_status(redis_client, "gate", (1080, 1920))
    write_status(redis_client, "yard", (240, 360))
    write_status(redis_client, "door", None)  # a status from before sizes were recorded
    assert source_size(redis_client, ["gate"]) == (1080, 1920)
    assert source_size(redis_client, ["gate", "yard"]) == (240, 360)
    assert source_size(redis_client, ["gate", "door"]) is None
    assert source_size(redis_client, ["gate", "never-streamed"]) is None
    assert source_size(redis_client, []) is None


def test_the_analysis_rate_of_cameras_is_the_lowest_of_those_streaming(
    redis_client: redis.Redis,
) -> None:
    write_status(redis_client, "gate", (1080, 1920), fps=9.8)
    write_status(redis_client, "yard", (240, 360), fps=5.0)  # a source slower than the analysis rate
    write_status(redis_client, "door", (240, 360), fps=0.0)  # reconnecting
    assert analysis_fps(redis_client, ["gate"]) == 9.8
    assert analysis_fps(redis_client, ["gate", "yard"]) == 5.0
    assert analysis_fps(redis_client, ["gate", "door", "never-streamed"]) == 9.8
    assert analysis_fps(redis_client, ["door", "never-streamed"]) is None
    assert analysis_fps(redis_client, []) is None
