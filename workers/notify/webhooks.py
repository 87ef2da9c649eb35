"""Webhook sink: POSTs every alert event to each configured URL, in order, at least once.

Each URL has its own consumer group on the alert event stream, created at the stream's end when the URL
is first configured (a new sink does not replay history). An event is acknowledged once its URL answered
2xx; until then it is retried with a growing backoff, holding back later events so a receiver sees them
in order. After `max_attempts` the event is given up for that URL, with an error in the log.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis

from workers.bus import keys
from workers.config import Settings
from workers.proc.process import Backoff, WorkerProcess
from workers.proc.redaction import redact


@dataclass
class Delivery:
    """One URL's place in the event stream."""

    url: str
    group: str
    backoff: Backoff
    attempts: int = 0
    next_try: float = 0.0
    delivered: int = 0
    given_up: int = 0
    last_error: str = field(default="")


def event_payload(entry_id: str, event: keys.AlertEvent) -> dict[str, Any]:
    """The JSON body: the same shape as a /ws/alerts message."""
    return {"id": entry_id, "type": event.type, "alert": json.loads(event.alert)}


class WebhookWorker(WorkerProcess):
    role = "notify"
    step_interval_s = 0.0

    def __init__(self, settings: Settings, redis_url: str, *, worker_id: str | None = None) -> None:
        super().__init__(settings, redis_url, worker_id=worker_id)
        config = settings.webhooks
        self.deliveries = [
            Delivery(
                url=url,
                group=keys.webhook_group(hashlib.sha256(url.encode()).hexdigest()[:16]),
                backoff=Backoff(max_s=config.retry_max_s, initial_s=0.5),
            )
            for url in config.urls
        ]
        self.http = httpx.Client(timeout=config.timeout_s, follow_redirects=False)

    def setup(self) -> None:
        for delivery in self.deliveries:
            try:
                self.redis.xgroup_create(keys.ALERT_EVENTS, delivery.group, id="$", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        self.event("webhooks", urls=",".join(redact(d.url) for d in self.deliveries) or "none")

    def step(self) -> None:
        if not any(self._deliver_next(delivery) for delivery in self.deliveries):
            self.wait(0.25)

    def _deliver_next(self, delivery: Delivery) -> bool:
        """Try the URL's next event; True if there was one to try now."""
        if time.monotonic() < delivery.next_try:
            return False
        # Our pending entry (a failed try) comes first, so events reach the receiver in order.
        entries = self.redis.xreadgroup(delivery.group, self.worker_id, {keys.ALERT_EVENTS: "0"}, count=1)
        if not entries or not entries[0][1]:
            entries = self.redis.xreadgroup(delivery.group, self.worker_id, {keys.ALERT_EVENTS: ">"}, count=1)
        if not entries or not entries[0][1]:
            return False
        raw_id, fields = entries[0][1][0]
        entry_id = raw_id.decode()
        try:
            response = self.http.post(
                delivery.url, json=event_payload(entry_id, keys.AlertEvent.from_fields(fields))
            )
            ok, reason = response.is_success, f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            ok, reason = False, type(exc).__name__
        if ok:
            self.redis.xack(keys.ALERT_EVENTS, delivery.group, raw_id)
            delivery.delivered += 1
            delivery.attempts, delivery.next_try = 0, 0.0
            delivery.backoff.reset()
            return True
        delivery.attempts += 1
        delivery.last_error = reason
        if delivery.attempts >= self.settings.webhooks.max_attempts:
            self.event(
                "webhook_given_up", logging.ERROR, url=redact(delivery.url), event=entry_id, error=reason,
                attempts=delivery.attempts,
            )  # fmt: skip
            self.redis.xack(keys.ALERT_EVENTS, delivery.group, raw_id)
            delivery.given_up += 1
            delivery.attempts = 0
            delivery.backoff.reset()
            return True
        delay = delivery.backoff.next_delay()
        delivery.next_try = time.monotonic() + delay
        self.event(
            "webhook_retry", logging.WARNING, url=redact(delivery.url), event=entry_id, error=reason,
            retry_in_s=f"{delay:.1f}",
        )  # fmt: skip
        return True

    def teardown(self) -> None:
        self.http.close()

    def heartbeat_info(self) -> dict[str, Any]:
        return {
            redact(d.url): {"delivered": d.delivered, "given_up": d.given_up, "last_error": d.last_error}
            for d in self.deliveries
        }
