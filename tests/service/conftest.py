"""API fixtures: the app over the test Redis, and writers that follow the workers' Redis layout."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
import redis
from fastapi.testclient import TestClient

from service.api.app import create_app
from workers.bus import keys
from workers.bus.connection import free_port
from workers.bus.schemas import Alert, AlertEvent, AlertEventType, WorkerHeartbeat
from workers.config import Settings

OPERATOR_TOKEN = "s3cret-operator-token"

AlertWriter = Callable[..., tuple[Alert, str]]


def make_settings(redis_url: str, **overrides: object) -> Settings:
    return Settings(redis_url=redis_url, **overrides)


@pytest.fixture
def api(redis_url: str) -> Iterator[TestClient]:
    """The app with reads open and writes needing OPERATOR_TOKEN."""
    with TestClient(create_app(make_settings(redis_url, operator_token=OPERATOR_TOKEN))) as client:
        yield client


@pytest.fixture
def operator_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


@pytest.fixture
def write_alert(redis_client: redis.Redis) -> AlertWriter:
    """Write an alert and its event the way the inference worker does: one MULTI per batch."""

    def write(
        alert_id: str,
        camera: str = "cam1",
        start_ts: float = 1_700_000_000.0,
        state: str = "open",
        event: AlertEventType = "new",
    ) -> tuple[Alert, str]:
        alert = Alert(
            id=alert_id,
            camera=camera,
            state=state,
            start_ts=start_ts,
            end_ts=start_ts + 5 if state == "closed" else None,
            start_seq=10,
            end_seq=60 if state == "closed" else None,
            last_seq=60,
            peak_score=0.9,
            peak_seq=30,
            peak_ts=start_ts + 2,
            model="v1",
        )
        start_ms = int(start_ts * 1000)
        with redis_client.pipeline(transaction=True) as pipe:
            pipe.hset(keys.ALERTS, alert.id, alert.model_dump_json())
            pipe.zadd(keys.ALERTS_BY_TIME, {alert.id: start_ms})
            pipe.zadd(keys.alerts_by_camera(camera), {alert.id: start_ms})
            pipe.xadd(keys.ALERT_EVENTS, AlertEvent.of(event, alert).to_fields())
            *_, event_id = pipe.execute()
        return alert, event_id.decode()

    return write


@pytest.fixture
def heartbeat(redis_client: redis.Redis) -> Callable[[str, str, float], None]:
    def beat(worker_id: str, role: str, ts: float) -> None:
        beat_msg = WorkerHeartbeat(
            id=worker_id,
            role=role,
            pid=os.getpid(),
            host="test",
            started_ts=ts - 60,
            ts=ts,
        )
        redis_client.hset(keys.WORKERS, worker_id, beat_msg.model_dump_json())

    return beat


@pytest.fixture
def closed_port_url() -> str:
    """A Redis URL where nothing listens."""
    return f"redis://127.0.0.1:{free_port()}/0"
