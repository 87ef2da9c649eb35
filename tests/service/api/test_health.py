"""Probes, Redis outages (503, never 500) and the `vigil api` command's checks."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import pytest
import redis
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from service.api.app import create_app
from service.cli.commands import api as api_command
from service.cli.commands.common import CommandError
from tests.service.conftest import make_settings
from workers.bus import keys, schemas
from workers.bus.schemas import now
from workers.config import Settings
from workers.store.cameras import put_camera


def test_healthz(api: TestClient) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}


def test_readyz_needs_live_ingest_and_inference(
    api: TestClient, heartbeat: Callable[[str, str, float], None]
) -> None:
    empty = api.get("/readyz")
    assert empty.status_code == 503
    assert empty.json()["missing"] == ["ingest", "inference"]
    assert "no live ingest worker" in empty.json()["detail"]

    heartbeat("ingest-1", "ingest", now())
    heartbeat("inference-1", "inference", now() - 60)  # stale: that worker is gone
    stale = api.get("/readyz")
    assert stale.status_code == 503
    assert stale.json()["missing"] == ["inference"]

    heartbeat("inference-2", "inference", now())
    ready = api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True
    assert ready.json()["live_workers"] == {"ingest": 1, "inference": 1}


def test_readyz_names_cameras_that_are_not_streaming(
    api: TestClient, redis_client: redis.Redis, heartbeat: Callable[[str, str, float], None]
) -> None:
    heartbeat("ingest-1", "ingest", now())
    heartbeat("inference-1", "inference", now())
    for camera, state in (("yard", "reconnecting"), ("gate", "streaming"), ("old", "finished")):
        put_camera(redis_client, schemas.CameraConfig(id=camera, source=f"rtsp://127.0.0.1/{camera}"))
        status = schemas.CameraStatus(camera=camera, state=state)
        redis_client.hset(keys.CAMERA_STATUS, camera, status.model_dump_json())
    ready = api.get("/readyz")
    assert ready.status_code == 200  # one camera down does not take the API out of service
    assert ready.json()["cameras_down"] == {"yard": "reconnecting"}
    assert ready.json()["detail"] == "ready; cameras not streaming: yard (reconnecting)"


def test_redis_down_gives_503(closed_port_url: str) -> None:
    with TestClient(create_app(make_settings(closed_port_url))) as client:
        assert client.get("/healthz").status_code == 200
        for path in ("/api/cameras", "/api/alerts", "/api/alerts/a1", "/api/cameras/gate/snapshot.jpg"):
            response = client.get(path)
            assert response.status_code == 503, path
            assert "Redis is unavailable" in response.json()["detail"]
        added = client.post("/api/cameras", json={"id": "gate", "source": "/v.mp4"})
        assert added.status_code == 503
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["missing"] == ["redis"]
        with client.websocket_connect("/ws/alerts") as ws, pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 1011


def test_app_needs_a_redis_url() -> None:
    with pytest.raises(ValueError, match="VIGIL_REDIS_URL"):
        create_app(Settings(redis_url=None))


def test_api_command_without_redis_url_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api_command, "get_settings", lambda: Settings(redis_url=None))
    with pytest.raises(CommandError, match=r"VIGIL_REDIS_URL.*vigil up"):
        api_command.run(argparse.Namespace(host=None, port=None))
