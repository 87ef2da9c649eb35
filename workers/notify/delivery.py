"""Delivering the alert event stream to outside receivers (webhook URLs, an MQTT broker), in order, at
least once.

Each target has its own consumer group on the alert event stream, created at the stream's end when the
target is first configured (a new sink does not replay history). An event is acknowledged once the target
took it; until then it is retried with a growing backoff, holding back later events so a receiver sees
them in order. After `max_attempts` the event is given up for that target, with an error in the log.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from workers.bus import keys, schemas
from workers.proc.process import Backoff, WorkerProcess


@dataclass
class Delivery:
    """One target's place in the event stream."""

    target: str  # as shown in logs: without credentials
    group: str
    backoff: Backoff
    attempts: int = 0
    next_try: float = 0.0
    delivered: int = 0
    given_up: int = 0
    last_error: str = field(default="")


def event_payload(entry_id: str, event: schemas.AlertEvent) -> dict[str, Any]:
    """The JSON body: the same shape as a /ws/alerts message."""
    return {"id": entry_id, "type": event.type, "alert": json.loads(event.alert)}


class EventSink(WorkerProcess):
    """A worker that sends each alert event to its deliveries' targets through `send`."""

    step_interval_s = 0.0
    sink = "sink"  # names the log events: <sink>_retry, <sink>_given_up
    deliveries: list[Delivery]
    max_attempts: int

    def send(self, delivery: Delivery, entry_id: str, event: schemas.AlertEvent) -> tuple[bool, str]:
        """Hand one event to the target: (taken, the reason when not)."""
        raise NotImplementedError

    def setup(self) -> None:
        for delivery in self.deliveries:
            try:
                self.redis.xgroup_create(keys.ALERT_EVENTS, delivery.group, id="$", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def step(self) -> None:
        if not any(self._deliver_next(delivery) for delivery in self.deliveries):
            self.wait(0.25)

    def _deliver_next(self, delivery: Delivery) -> bool:
        """Try the target's next event; True if there was one to try now."""
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
        if not fields:  # a pending event the retention sweep removed while it waited: nothing to send
            self.redis.xack(keys.ALERT_EVENTS, delivery.group, raw_id)
            self.event(f"{self.sink}_skipped", logging.WARNING, target=delivery.target, event=entry_id,
                       reason="removed by retention (VIGIL_RETENTION__ALERTS_S)")  # fmt: skip
            delivery.attempts, delivery.next_try = 0, 0.0
            return True
        ok, reason = self.send(delivery, entry_id, schemas.AlertEvent.from_fields(fields))
        if ok:
            self.redis.xack(keys.ALERT_EVENTS, delivery.group, raw_id)
            delivery.delivered += 1
            delivery.attempts, delivery.next_try = 0, 0.0
            delivery.backoff.reset()
            return True
        delivery.attempts += 1
        delivery.last_error = reason
        if delivery.attempts >= self.max_attempts:
            self.event(
                f"{self.sink}_given_up", logging.ERROR, target=delivery.target, event=entry_id, error=reason,
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
            f"{self.sink}_retry", logging.WARNING, target=delivery.target, event=entry_id, error=reason,
            retry_in_s=f"{delay:.1f}",
        )  # fmt: skip
        return True

    def heartbeat_info(self) -> dict[str, Any]:
        return {
            d.target: {"delivered": d.delivered, "given_up": d.given_up, "last_error": d.last_error}
            for d in self.deliveries
        }
