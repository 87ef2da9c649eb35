"""The webhook sink against a real HTTP receiver on loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import redis

from tests.waiting import wait_for
from workers.bus import keys, schemas
from workers.config import Settings, WebhookSettings
from workers.notify.webhooks import WebhookWorker


class Receiver:
    """Answers 500 to the first `failures` requests, then 204; records what it accepted."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.requests = 0
        self.accepted: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.requests += 1
                if receiver.requests <= receiver.failures:
                    self.send_response(500)
                else:
                    receiver.accepted.append(body)
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def run_sink(
    redis_url: str, run_worker: Callable[[WebhookWorker], WebhookWorker]
) -> Callable[..., WebhookWorker]:
    def start(urls: list[str], max_attempts: int = 8) -> WebhookWorker:
        hooks = WebhookSettings(urls=urls, max_attempts=max_attempts, retry_max_s=0.2, timeout_s=2)
        worker = run_worker(WebhookWorker(Settings(heartbeat_s=0.2, webhooks=hooks), redis_url))
        wait_for(lambda: all(d.group for d in worker.deliveries) and worker.redis.exists(keys.ALERT_EVENTS))
        return worker

    return start


def write_event(client: redis.Redis, seq: int, kind: schemas.AlertEventType = "new") -> str:
    alert = schemas.Alert(
        id=f"cam1-{seq}", camera="cam1", state="open", start_ts=1000.0 + seq, start_seq=seq, last_seq=seq,
        peak_score=0.9, peak_seq=seq, peak_ts=1000.0 + seq, model="motion-baseline",
    )  # fmt: skip
    return client.xadd(keys.ALERT_EVENTS, schemas.AlertEvent.of(kind, alert).to_fields()).decode()


def test_events_are_delivered_in_order_once_despite_failures(
    redis_client: redis.Redis, run_sink: Callable[..., WebhookWorker]
) -> None:
    receiver = Receiver(failures=2)
    run_sink([receiver.url])
    ids = [write_event(redis_client, seq) for seq in range(3)]
    wait_for(lambda: len(receiver.accepted) == 3)
    assert [body["id"] for body in receiver.accepted] == ids
    assert receiver.accepted[0]["type"] == "new" and receiver.accepted[0]["alert"]["id"] == "cam1-0"
    assert receiver.requests == 5  # two failures of the first event, then one request each


def test_an_event_is_given_up_after_max_attempts_and_the_next_goes_through(
    redis_client: redis.Redis, run_sink: Callable[..., WebhookWorker]
) -> None:
    receiver = Receiver(failures=3)
    worker = run_sink([receiver.url], max_attempts=3)
    first, second = write_event(redis_client, 0), write_event(redis_client, 1)
    wait_for(lambda: len(receiver.accepted) == 1)
    assert receiver.accepted[0]["id"] == second and first not in {b["id"] for b in receiver.accepted}
    assert worker.deliveries[0].given_up == 1
    assert redis_client.xpending(keys.ALERT_EVENTS, worker.deliveries[0].group)["pending"] == 0


def test_an_event_removed_by_retention_while_it_waits_is_skipped(
    redis_client: redis.Redis, run_sink: Callable[..., WebhookWorker]
) -> None:
    receiver = Receiver(failures=1_000_000)  # down: the first event stays pending
    worker = run_sink([receiver.url], max_attempts=1_000_000)
    first = write_event(redis_client, 0)
    wait_for(lambda: receiver.requests >= 1)
    redis_client.xtrim(keys.ALERT_EVENTS, minid=first.split("-")[0] + "-1")  # as the retention sweep does
    receiver.failures = 0
    second = write_event(redis_client, 1)
    wait_for(lambda: len(receiver.accepted) == 1)
    assert receiver.accepted[0]["id"] == second
    assert redis_client.xpending(keys.ALERT_EVENTS, worker.deliveries[0].group)["pending"] == 0
