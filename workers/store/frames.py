"""A camera's buffered media in Redis: analysis frames, display JPEGs and the snapshot, scores, error maps
and per-minute heat. The workers write them (ingest, inference); the API reads them through here."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import redis

from workers.bus import keys, schemas
from workers.store.error_maps import decode_error_map

STORE_DELAY_S = 5.0  # how long after its capture a frame may be stored (decode, queueing, clock steps)


def get_snapshot(client: redis.Redis, camera: str) -> bytes | None:
    """The latest display JPEG of a camera, if the ingest worker has stored one."""
    return client.get(keys.snapshot_key(camera))


def _entries_near(client: redis.Redis, stream: str, ts: float, count: int) -> list[tuple[bytes, dict]]:
    """Up to `count` entries of a stream on each side of `ts` (stream ids are the insertion times in ms)."""
    at_ms = int(ts * 1000)
    return client.xrange(stream, min=at_ms, count=count) + client.xrevrange(
        stream, max=f"({at_ms}", count=count
    )


def displays_near(
    client: redis.Redis, camera: str, ts: float, count: int
) -> list[tuple[str, schemas.DisplayMessage]]:
    """(entry id, display frame) written around `ts`, nearest in capture time first."""
    entries = _entries_near(client, keys.display_stream(camera), ts, count)
    near = [(entry_id.decode(), schemas.DisplayMessage.from_fields(fields)) for entry_id, fields in entries]
    return sorted(near, key=lambda pair: abs(pair[1].ts - ts))


def frames_near(client: redis.Redis, camera: str, ts: float, count: int) -> list[schemas.FrameMessage]:
    """Analysis frames written around `ts`, nearest in capture time first."""
    entries = _entries_near(client, keys.frames_stream(camera), ts, count)
    return sorted((schemas.FrameMessage.from_fields(f) for _, f in entries), key=lambda m: abs(m.ts - ts))


def newest_frame(client: redis.Redis, camera: str) -> schemas.FrameMessage | None:
    newest = client.xrevrange(keys.frames_stream(camera), count=1)
    return schemas.FrameMessage.from_fields(newest[0][1]) if newest else None


def frames_between(
    client: redis.Redis, camera: str, start_ts: float | None, end_ts: float | None
) -> list[schemas.FrameMessage]:
    """The camera's buffered analysis frames captured between two times (None: no bound), oldest first."""
    # entry ids are the times frames were stored, at or a little after their capture
    low = str(int(start_ts * 1000)) if start_ts is not None else "-"
    high = str(int((end_ts + STORE_DELAY_S) * 1000)) if end_ts is not None else "+"
    messages = (
        schemas.FrameMessage.from_fields(fields)
        for _, fields in client.xrange(keys.frames_stream(camera), low, high)
    )
    return [
        m for m in messages if (start_ts is None or m.ts >= start_ts) and (end_ts is None or m.ts <= end_ts)
    ]


def buffered_runs(
    client: redis.Redis, camera: str, since_ts: float | None, size: tuple[int, int]
) -> list[np.ndarray]:
    """A camera's buffered analysis frames captured since `since_ts` (all when None), resized to `size`
    (height, width), as continuous runs uint8 [T, H, W]: a reconnect or a gap in the frame numbers
    starts a new run, so that no motion is measured across it."""
    runs: list[list[np.ndarray]] = []
    previous: schemas.FrameMessage | None = None
    for frame in frames_between(client, camera, since_ts, None):
        if previous is None or frame.session != previous.session or frame.seq != previous.seq + 1:
            runs.append([])
        runs[-1].append(frame.array(size))
        previous = frame
    return [np.stack(run) for run in runs]


def error_maps(client: redis.Redis, camera: str, seqs: list[int]) -> dict[int, np.ndarray]:
    """The pixel error maps still kept of those frames, by frame number."""
    encoded = client.mget([keys.error_map_key(camera, seq) for seq in seqs]) if seqs else []
    return {seq: decode_error_map(data) for seq, data in zip(seqs, encoded, strict=True) if data is not None}


def displays_between(
    client: redis.Redis, camera: str, start_ts: float, end_ts: float
) -> list[tuple[str, schemas.DisplayMessage]]:
    """(entry id, display frame) of every display frame stored between two times, oldest first."""
    entries = client.xrange(keys.display_stream(camera), min=int(start_ts * 1000), max=int(end_ts * 1000))
    return [(entry_id.decode(), schemas.DisplayMessage.from_fields(fields)) for entry_id, fields in entries]


def display_frame(client: redis.Redis, camera: str, entry_id: str) -> schemas.DisplayMessage | None:
    """One display frame by its stream entry id, None when it is not kept (any more)."""
    try:
        entries = client.xrange(keys.display_stream(camera), min=entry_id, max=entry_id)
    except redis.ResponseError:  # digits beyond a 64-bit stream id: no such entry can exist
        return None
    return schemas.DisplayMessage.from_fields(entries[0][1]) if entries else None


def error_map(client: redis.Redis, camera: str, seq: int) -> np.ndarray | None:
    """The pixel error map of frame `seq`, None when it was not stored or has expired."""
    encoded = client.get(keys.error_map_key(camera, seq))
    return decode_error_map(encoded) if encoded is not None else None


def heat_maps(client: redis.Redis, camera: str, minutes: range) -> list[np.ndarray]:
    """The per-minute sums of anomalous error maps kept for those minutes (epoch minutes)."""
    encoded = client.mget([keys.heat_bucket_key(camera, minute) for minute in minutes])
    return [decode_error_map(data) for data in encoded if data is not None]


def page_scores(
    client: redis.Redis,
    camera: str,
    since_ts: float | None,
    limit: int,
    *,
    after: str | None = None,
    before: str | None = None,
) -> list[tuple[str, schemas.ScoreMessage]]:
    """(entry id, score) of the camera's frames captured at or after `since_ts`, oldest first: the first
    `limit` after the entry id `after`, else the last `limit` before `before` (or the newest)."""
    # score entries are written after their frame's capture: ids at or after `since` hold every such frame
    low = str(int(since_ts * 1000)) if since_ts is not None else "-"
    try:
        if after is not None:
            entries = client.xrange(keys.scores_stream(camera), min=f"({after}", max="+", count=limit)
        else:
            high = f"({before}" if before is not None else "+"
            entries = client.xrevrange(keys.scores_stream(camera), max=high, min=low, count=limit)[::-1]
    except redis.ResponseError as exc:
        if "for the interval" not in str(exc):
            raise
        return []  # an exclusive bound past the first or last possible id: nothing lies beyond it
    scores = ((entry_id.decode(), schemas.ScoreMessage.from_fields(fields)) for entry_id, fields in entries)
    return [(entry_id, score) for entry_id, score in scores if since_ts is None or score.ts >= since_ts]


@dataclass(frozen=True)
class CameraReadings:
    """What Redis holds about one camera's streams, read in one pipeline."""

    frames_buffered: int
    frames_pending: int
    newest_frame_ts: float | None
    newest_score: schemas.ScoreMessage | None
    frames_dropped: int
    alerts_total: int
    alert_open: bool


def camera_readings(client: redis.Redis, camera_ids: list[str]) -> dict[str, CameraReadings]:
    """Per camera: frame buffer length, pending frames, newest frame and score, dropped frames, alerts."""
    pipe = client.pipeline(transaction=False)
    for camera in camera_ids:
        frames = keys.frames_stream(camera)
        pipe.xlen(frames)
        pipe.xpending(frames, keys.INFERENCE_GROUP)
        pipe.xrevrange(frames, count=1)
        pipe.xrevrange(keys.scores_stream(camera), count=1)
        pipe.hmget(keys.scorer_state_key(camera), [keys.DROPPED_FIELD, "tracker"])
        pipe.zcard(keys.alerts_by_camera(camera))
    replies = pipe.execute(raise_on_error=False)
    readings = {}
    for index, camera in enumerate(camera_ids):
        length, pending, newest_frame, newest_score, state, alerts = replies[6 * index : 6 * index + 6]
        if isinstance(pending, redis.ResponseError):  # no consumer group yet: no inference worker took it
            pending = {"pending": 0}
        dropped, tracker = state
        readings[camera] = CameraReadings(
            frames_buffered=int(length),
            frames_pending=int(pending["pending"]),
            newest_frame_ts=float(newest_frame[0][1][b"ts"]) if newest_frame else None,
            newest_score=schemas.ScoreMessage.from_fields(newest_score[0][1]) if newest_score else None,
            frames_dropped=int(dropped or 0),
            alerts_total=int(alerts),
            alert_open=bool(tracker and json.loads(tracker).get("alert")),
        )
    return readings
