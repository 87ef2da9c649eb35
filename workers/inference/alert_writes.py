"""Alert events into Redis: the alert record, its time indexes and its entry in the event stream."""

from __future__ import annotations

import json
import time

import redis

from workers.bus import keys
from workers.inference.alerts import AlertTracker
from workers.inference.leases import CameraLeases, LeaseLost
from workers.store import frames

# ingest states after which no frame of the current session will come
STOPPED_STATES = frozenset({"reconnecting", "finished", "error", "stopped"})


def queue_alert_event(
    pipe: redis.client.Pipeline, event_type: keys.AlertEventType, alert: keys.Alert
) -> None:
    start_ms = int(alert.start_ts * 1000)
    pipe.hset(keys.ALERTS, alert.id, alert.model_dump_json())
    pipe.zadd(keys.ALERTS_BY_TIME, {alert.id: start_ms})
    pipe.zadd(keys.alerts_by_camera(alert.camera), {alert.id: start_ms})
    pipe.xadd(keys.ALERT_EVENTS, keys.AlertEvent.of(event_type, alert).to_fields())


def stop_reason(status: keys.CameraStatus | None) -> str | None:
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
) -> keys.Alert | None:
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
    return alert
