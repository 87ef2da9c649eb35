"""Alert events into Redis: the alert record, its time indexes and its entry in the event stream.

On one Redis they are written in the transaction of the scores that raised them. On a Redis Cluster the
alert keys live in their own slot (keys.ALERTS_GROUP), so the camera's transaction writes the event to the
camera's outbox stream (keys.alert_outbox) and `publish_outbox` then moves each outbox entry, in order, to
the alert keys in one transaction of their slot, and deletes it. A crash between the two leaves the entry
in the outbox: the camera's next owner publishes it again unless the event stream already holds its
event id (the outbox entry id), so an event is neither lost nor written twice.
"""

from __future__ import annotations

import json
import time

import redis

from workers.bus import keys, schemas
from workers.bus.connection import is_cluster
from workers.inference.alerts import AlertTracker
from workers.inference.leases import CameraLeases, LeaseLost
from workers.store import frames

# ingest states after which no frame of the current session will come
STOPPED_STATES = frozenset({"reconnecting", "finished", "error", "stopped"})

# Redis Cluster: how far before an outbox entry's id a replay looks for its event (the two ids come
# from the clocks of two nodes)
CLOCK_SKEW_MS = 60_000


def _queue_published(pipe: redis.client.Pipeline, event: schemas.AlertEvent) -> None:
    alert = event.parsed_alert()
    start_ms = int(alert.start_ts * 1000)
    pipe.hset(keys.ALERTS, alert.id, event.alert)
    pipe.zadd(keys.ALERTS_BY_TIME, {alert.id: start_ms})
    pipe.zadd(keys.alerts_by_camera(alert.camera), {alert.id: start_ms})
    pipe.xadd(keys.ALERT_EVENTS, event.to_fields())


def queue_alert_event(
    pipe: redis.client.Pipeline, event_type: schemas.AlertEventType, alert: schemas.Alert
) -> None:
    """Queue the event on the camera's MULTI: published with it on one Redis, into its outbox on a cluster."""
    event = schemas.AlertEvent.of(event_type, alert)
    if is_cluster(pipe):
        pipe.xadd(keys.alert_outbox(alert.camera), event.to_fields())
    else:
        _queue_published(pipe, event)


def publish_outbox(client: redis.Redis, camera: str, *, recovering: bool = False) -> int:
    """Redis Cluster: publish the camera's outbox entries, oldest first; returns how many were published.
    `recovering` (a camera just taken): skip entries whose event an earlier owner published already."""
    if not is_cluster(client):
        return 0
    outbox = keys.alert_outbox(camera)
    entries = client.xrange(outbox)
    published = _published_event_ids(client, camera, entries[0][0]) if recovering and entries else set()
    count = 0
    for entry_id, fields in entries:
        event_id = f"{camera}/{entry_id.decode()}"
        if event_id not in published:
            event = schemas.AlertEvent.from_fields(fields).model_copy(update={"event_id": event_id})
            with client.pipeline(transaction=True) as pipe:
                _queue_published(pipe, event)
                pipe.execute()
            count += 1
        client.xdel(outbox, entry_id)
    return count


def _published_event_ids(client: redis.Redis, camera: str, first_entry: bytes) -> set[str]:
    """Event ids of the camera's events in the event stream since (about) its oldest outbox entry."""
    since_ms = max(int(first_entry.decode().split("-")[0]) - CLOCK_SKEW_MS, 0)
    found: set[str] = set()
    low = str(since_ms)
    while entries := client.xrange(keys.ALERT_EVENTS, min=low, count=1000):
        for _, fields in entries:
            if fields.get(b"camera") == camera.encode() and b"event_id" in fields:
                found.add(fields[b"event_id"].decode())
        low = f"({entries[-1][0].decode()}"
    return found


def stop_reason(status: schemas.CameraStatus | None) -> str | None:
    """Why a camera's open alert must close now that its ingest stopped, or None while it streams."""
    if status is None or status.state not in STOPPED_STATES:
        return None
    return f"camera {status.state}" + (f": {status.message}" if status.message else "")


def end_alert(
    client: redis.Redis,
    leases: CameraLeases,
    camera: str,
    tracker: AlertTracker,
    last_scored_seq: int | None,
    reason: str,
) -> schemas.Alert | None:
    """End the camera's open alert with `reason` once every frame it stored is scored (its frames decide
    first); the `end` event and the tracker state land together. None when there is nothing to end yet.
    Raises LeaseLost when the camera changed owner (then nothing is written)."""
    if tracker.alert is None:
        return None
    newest = frames.newest_frame(client, camera)
    if newest is not None and last_scored_seq is not None and newest.seq > last_scored_seq:
        return None
    alert = tracker.close_open(time.time(), reason)
    assert alert is not None
    with client.pipeline(transaction=True) as pipe:
        try:
            leases.watch_owned(pipe, [camera])
            pipe.multi()
            queue_alert_event(pipe, "end", alert)
            pipe.hset(keys.scorer_state_key(camera), "tracker", json.dumps(tracker.state_dict()))
            pipe.execute()
        except redis.WatchError as exc:
            raise LeaseLost(f"camera {camera} changed owner while its alert was ended") from exc
    publish_outbox(client, camera)
    return alert
