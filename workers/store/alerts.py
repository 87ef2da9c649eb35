"""Alerts and alert events as the API reads them (the inference worker writes them, workers/inference/),
and how many workers of each role are live.

The key layout is that of workers/bus/keys.py, the message schemas those of workers/bus/schemas.py.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import redis

from workers.bus import keys, schemas
from workers.bus.schemas import Alert, AlertEvent
from workers.proc.process import read_heartbeats

# With a state filter, alerts are scanned from the time index in batches of at least this many ids.
ALERT_SCAN_BATCH = 200


# ---------------------------------------------------------------- workers
def live_worker_counts(client: redis.Redis, max_age_s: float, now_ts: float) -> Counter[str]:
    """How many workers of each role have sent a heartbeat within `max_age_s` of `now_ts`."""
    return Counter(beat.role for beat in read_heartbeats(client) if now_ts - beat.ts <= max_age_s)


# ---------------------------------------------------------------- alerts
@dataclass(frozen=True)
class AlertPosition:
    """A place in the newest-first alert order: (start time score, alert id), ties by id descending."""

    score: float
    alert_id: str

    def is_at_or_before(self, score: float, alert_id: str) -> bool:
        """Whether (score, alert_id) comes at or before this position in newest-first order."""
        return score > self.score or (score == self.score and alert_id.encode() >= self.alert_id.encode())


@dataclass(frozen=True)
class AlertPage:
    alerts: list[Alert]
    next_position: AlertPosition | None


def with_categories(client: redis.Redis, alerts: list[Alert]) -> list[Alert]:
    """The alerts with the category the retraining worker recorded (an operator's, else predicted)."""
    if not alerts:
        return alerts
    recorded = client.hmget(keys.ALERT_CATEGORIES, [alert.id for alert in alerts])
    out = []
    for alert, raw in zip(alerts, recorded, strict=True):
        if raw is not None:
            category = schemas.AlertCategory.model_validate_json(raw)
            alert = alert.model_copy(
                update={"category": category.category, "category_confidence": category.confidence}
            )
        out.append(alert)
    return out


def get_alert(client: redis.Redis, alert_id: str) -> Alert | None:
    raw = client.hget(keys.ALERTS, alert_id)
    return with_categories(client, [Alert.model_validate_json(raw)])[0] if raw is not None else None


def list_alerts(
    client: redis.Redis,
    *,
    limit: int,
    camera: str | None = None,
    since_ts: float | None = None,
    state: str | None = None,
    after: AlertPosition | None = None,
) -> AlertPage:
    """Alerts newest first (by start time), from just after `after` when given.

    Pages are keyed by position, not offset, so alerts inserted meanwhile neither repeat nor hide
    older ones. Within one call the scan uses offsets below a fixed upper score; the ids already seen
    are skipped in case an insert shifts them.
    """
    index = keys.alerts_by_camera(camera) if camera is not None else keys.ALERTS_BY_TIME
    max_score: float | str = after.score if after is not None else "+inf"
    min_score: float | str = since_ts * 1000.0 if since_ts is not None else "-inf"
    batch = limit + 1 if state is None else max(limit + 1, ALERT_SCAN_BATCH)
    found: list[tuple[float, Alert]] = []
    seen: set[bytes] = set()
    offset = 0
    while len(found) <= limit:
        rows: list[tuple[bytes, float]] = client.zrevrangebyscore(
            index, max_score, min_score, start=offset, num=batch, withscores=True
        )
        if not rows:
            break
        offset += len(rows)
        candidates = [
            (member, score)
            for member, score in rows
            if member not in seen
            and not (after is not None and after.is_at_or_before(score, member.decode()))
        ]
        seen.update(member for member, _ in rows)
        if not candidates:
            continue
        raw_alerts: list[bytes | None] = client.hmget(keys.ALERTS, [member for member, _ in candidates])
        for (_, score), raw in zip(candidates, raw_alerts, strict=True):
            if raw is None:
                continue
            alert = Alert.model_validate_json(raw)
            if state is None or alert.state == state:
                found.append((score, alert))
    page = found[:limit]
    next_position = AlertPosition(page[-1][0], page[-1][1].id) if len(found) > limit else None
    return AlertPage(with_categories(client, [alert for _, alert in page]), next_position)


# ---------------------------------------------------------------- alert events
def last_alert_event_id(client: redis.Redis) -> str:
    """The id of the newest alert event, or "0-0" when there is none yet."""
    newest: list[tuple[bytes, dict[bytes, bytes]]] = client.xrevrange(keys.ALERT_EVENTS, count=1)
    return newest[0][0].decode() if newest else "0-0"


def read_alert_events(
    client: redis.Redis, after_id: str, *, count: int, block_ms: int
) -> list[tuple[str, AlertEvent]]:
    """Up to `count` alert events after `after_id`, waiting up to `block_ms` for the first one."""
    reply = client.xread({keys.ALERT_EVENTS: after_id}, count=count, block=block_ms)
    if not reply:
        return []
    _, entries = reply[0]
    return [(entry_id.decode(), AlertEvent.from_fields(fields)) for entry_id, fields in entries]


def alert_totals(client: redis.Redis) -> tuple[int, int]:
    """(alerts raised, alert events written), all cameras."""
    return int(client.zcard(keys.ALERTS_BY_TIME)), int(client.xlen(keys.ALERT_EVENTS))
