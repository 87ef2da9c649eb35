"""The cameras' data access: how large their sources' frames are."""

from __future__ import annotations

import redis

from workers.bus import keys, schemas
from workers.store.cameras import source_size


def write_status(client: redis.Redis, camera: str, size: tuple[int, int] | None) -> None:
    status = schemas.CameraStatus(camera=camera, state="streaming", source_size=size)
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
