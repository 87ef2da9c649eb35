"""Webhook sink: POSTs every alert event to each configured URL, in order, at least once (the rules are
in workers/notify/delivery.py); a URL took an event when it answered 2xx."""

from __future__ import annotations

import hashlib

import httpx

from workers.bus import keys, schemas
from workers.config import Settings
from workers.notify.delivery import Delivery, EventSink, event_payload
from workers.proc.process import Backoff
from workers.proc.redaction import redact


class WebhookWorker(EventSink):
    role = "notify"
    sink = "webhook"

    def __init__(self, settings: Settings, redis_url: str, *, worker_id: str | None = None) -> None:
        super().__init__(settings, redis_url, worker_id=worker_id)
        config = settings.webhooks
        self.max_attempts = config.max_attempts
        self.urls = {
            keys.webhook_group(hashlib.sha256(url.encode()).hexdigest()[:16]): url for url in config.urls
        }
        self.deliveries = [
            Delivery(
                target=redact(url), group=group, backoff=Backoff(max_s=config.retry_max_s, initial_s=0.5)
            )
            for group, url in self.urls.items()
        ]
        self.http = httpx.Client(timeout=config.timeout_s, follow_redirects=False)

    def setup(self) -> None:
        super().setup()
        self.event("webhooks", urls=",".join(d.target for d in self.deliveries) or "none")

    def send(self, delivery: Delivery, entry_id: str, event: schemas.AlertEvent) -> tuple[bool, str]:
        try:
            response = self.http.post(self.urls[delivery.group], json=event_payload(entry_id, event))
        except httpx.HTTPError as exc:
            return False, type(exc).__name__
        return response.is_success, f"HTTP {response.status_code}"

    def teardown(self) -> None:
        self.http.close()
