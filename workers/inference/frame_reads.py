"""How the inference worker reads its cameras' frames through the `inference` consumer group."""

from __future__ import annotations

from collections.abc import Callable

import redis

from workers.bus import keys, schemas
from workers.bus.connection import is_cluster

StreamReply = list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]


def claim_pending(client: redis.Redis, stream_key: str, worker_id: str) -> int:
    """Move every pending entry of the stream to `worker_id`; forget consumers left with none."""
    claimed, start = 0, "0-0"
    while True:
        start, entries, *_ = client.xautoclaim(
            stream_key, keys.INFERENCE_GROUP, worker_id, min_idle_time=0, start_id=start, count=100
        )
        claimed += len(entries)
        if start in (b"0-0", "0-0"):
            break
    for consumer in client.xinfo_consumers(stream_key, keys.INFERENCE_GROUP):
        name = consumer["name"].decode() if isinstance(consumer["name"], bytes) else consumer["name"]
        if name != worker_id and consumer["pending"] == 0:
            client.xgroup_delconsumer(stream_key, keys.INFERENCE_GROUP, name)
    return claimed


def read(
    client: redis.Redis,
    worker_id: str,
    streams: dict[str, str],
    count: int,
    block_ms: int,
    wait: Callable[[float], object],
) -> StreamReply:
    """Up to `count` entries of each stream (stream key -> id to read after), waiting up to block_ms."""
    if not is_cluster(client):
        return client.xreadgroup(keys.INFERENCE_GROUP, worker_id, streams, count=count, block=block_ms)
    # each stream alone (one slot per command); the cluster pipeline sends each node its share at once
    with client.pipeline(transaction=False) as pipe:
        for stream_key, read_id in streams.items():
            pipe.xreadgroup(keys.INFERENCE_GROUP, worker_id, {stream_key: read_id}, count=count)
        response = [stream for reply in pipe.execute() for stream in reply or []]
    if not any(entries for _, entries in response):
        wait(block_ms / 1000.0)  # what BLOCK does on one Redis, without holding a node per camera
    return response


def camera_of(stream_key: bytes | str) -> str:
    """The camera of a per-camera key (its hash tag)."""
    name = stream_key.decode() if isinstance(stream_key, bytes) else stream_key
    return name[name.index("{") + 1 : name.index("}")]


def history_before(
    client: redis.Redis, camera: str, first: schemas.FrameMessage, first_id: str, count: int
) -> list[schemas.FrameMessage]:
    """Up to `count` frames stored before `first` (entry `first_id`) in its session, oldest first."""
    entries = client.xrevrange(keys.frames_stream(camera), max=f"({first_id}", count=count)
    past = [schemas.FrameMessage.from_fields(fields) for _, fields in reversed(entries)]
    return [frame for frame in past if frame.session == first.session]
