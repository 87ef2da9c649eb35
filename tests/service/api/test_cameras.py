"""Camera endpoints: CRUD, validation, operator auth, credential masking, snapshots."""

from __future__ import annotations

from collections.abc import Iterator

import redis
from fastapi.testclient import TestClient

from service.api.app import create_app
from tests.service.conftest import make_settings
from workers.bus import keys, schemas
from workers.bus.schemas import CameraConfig, CameraStatus
from workers.proc.redaction import redact
from workers.store import model_registry

RTSP = "rtsp://admin:hunter2@10.0.0.5:554/stream1"


def test_add_list_get_delete(
    api: TestClient, operator_headers: dict[str, str], redis_client: redis.Redis
) -> None:
    created = api.post(
        "/api/cameras", json={"id": "gate", "source": RTSP, "fps": 5}, headers=operator_headers
    )
    assert created.status_code == 201
    assert created.json()["id"] == "gate"
    assert created.json()["status"] is None
    # the worker-facing config keeps the real source
    assert CameraConfig.model_validate_json(redis_client.hget(keys.CAMERAS, "gate")).source == RTSP

    status = CameraStatus(camera="gate", state="error", message=f"cannot open {RTSP}: 401")
    redis_client.hset(keys.CAMERA_STATUS, "gate", status.model_dump_json())
    listed = api.get("/api/cameras").json()
    assert [camera["id"] for camera in listed] == ["gate"]
    assert listed[0]["status"]["state"] == "error"
    assert api.get("/api/cameras/gate").json()["fps"] == 5

    assert api.delete("/api/cameras/gate", headers=operator_headers).status_code == 204
    assert api.get("/api/cameras").json() == []
    missing = api.get("/api/cameras/gate")
    assert missing.status_code == 404
    assert "gate" in missing.json()["detail"]
    assert api.delete("/api/cameras/gate", headers=operator_headers).status_code == 404


def test_credentials_never_returned(
    api: TestClient, operator_headers: dict[str, str], redis_client: redis.Redis
) -> None:
    created = api.post("/api/cameras", json={"id": "gate", "source": RTSP}, headers=operator_headers)
    status = CameraStatus(camera="gate", state="reconnecting", message=f"lost {RTSP}")
    redis_client.hset(keys.CAMERA_STATUS, "gate", status.model_dump_json())
    bad = api.post("/api/cameras", json={"id": "gate 2", "source": RTSP, "fps": -1}, headers=operator_headers)
    bodies = [created.text, api.get("/api/cameras").text, api.get("/api/cameras/gate").text, bad.text]
    for body in bodies:
        assert "hunter2" not in body and "admin" not in body
    assert api.get("/api/cameras/gate").json()["source"] == "rtsp://***@10.0.0.5:554/stream1"
    assert api.get("/api/cameras/gate").json()["status"]["message"] == "lost rtsp://***@10.0.0.5:554/stream1"


def test_redact() -> None:
    assert redact("rtsp://u:p@ss@host/x") == "rtsp://***@host/x"
    assert redact("http://cam/video?user=a&password=b&fps=5") == "http://cam/video?user=a&password=***&fps=5"
    assert redact("/videos/site1.mp4") == "/videos/site1.mp4"
    assert redact("rtsp://host:554/live") == "rtsp://host:554/live"
    # references to credentials held elsewhere are no secret, and operators need to see them
    assert redact("rtsp://${GATE_USER}:${GATE_PASS}@h/s") == "rtsp://${GATE_USER}:${GATE_PASS}@h/s"
    assert redact("rtsp://${GATE_USER}:hunter2@h/s") == "rtsp://***@h/s"
    assert redact("http://h/v?token=${GATE_TOKEN}") == "http://h/v?token=${GATE_TOKEN}"


def test_duplicate_id_conflicts(api: TestClient, operator_headers: dict[str, str]) -> None:
    camera = {"id": "gate", "source": "/videos/gate.mp4"}
    assert api.post("/api/cameras", json=camera, headers=operator_headers).status_code == 201
    again = api.post("/api/cameras", json=camera, headers=operator_headers)
    assert again.status_code == 409
    assert "exists" in again.json()["detail"]


def test_invalid_cameras_rejected(api: TestClient, operator_headers: dict[str, str]) -> None:
    for body in (
        {"id": "bad id!", "source": "/v.mp4"},
        {"id": "gate", "source": ""},
        {"id": "gate", "source": "/v.mp4", "fps": 0},
        {"id": "gate", "source": "/v.mp4", "ignore_zones": [{"points": [[0, 0], [1, 1]]}]},
        {"source": "/v.mp4"},
    ):
        response = api.post("/api/cameras", json=body, headers=operator_headers)
        assert response.status_code == 422, body
        assert isinstance(response.json()["detail"], list)
    not_json = api.post(
        "/api/cameras", content=b"{not json", headers={**operator_headers, "Content-Type": "application/json"}
    )
    assert not_json.status_code == 422
    assert api.get("/api/cameras/bad%20id").status_code == 422


def test_writes_need_the_operator_token(api: TestClient, operator_headers: dict[str, str]) -> None:
    camera = {"id": "gate", "source": "/videos/gate.mp4"}
    missing = api.post("/api/cameras", json=camera)
    assert missing.status_code == 401
    assert "Bearer" in missing.json()["detail"]
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    wrong = api.post("/api/cameras", json=camera, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert api.get("/api/cameras").json() == []
    assert api.post("/api/cameras", json=camera, headers=operator_headers).status_code == 201
    assert api.delete("/api/cameras/gate").status_code == 401
    assert api.delete("/api/cameras/gate", headers=operator_headers).status_code == 204


def test_writes_open_without_a_configured_token(redis_url: str) -> None:
    with TestClient(create_app(make_settings(redis_url))) as client:
        assert client.post("/api/cameras", json={"id": "gate", "source": "/v.mp4"}).status_code == 201


def test_snapshot(api: TestClient, operator_headers: dict[str, str], redis_client: redis.Redis) -> None:
    assert api.get("/api/cameras/gate/snapshot.jpg").status_code == 404
    api.post("/api/cameras", json={"id": "gate", "source": "/v.mp4"}, headers=operator_headers)
    no_image = api.get("/api/cameras/gate/snapshot.jpg")
    assert no_image.status_code == 404
    assert "no image yet" in no_image.json()["detail"]
    jpeg = b"\xff\xd8\xff\xe0fake-jpeg\xff\xd9"
    redis_client.set(keys.snapshot_key("gate"), jpeg)
    image = api.get("/api/cameras/gate/snapshot.jpg")
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/jpeg"
    assert image.content == jpeg


def test_oversized_body_is_413(api: TestClient, operator_headers: dict[str, str]) -> None:
    body = b'{"id": "gate", "source": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    response = api.post(
        "/api/cameras", content=body, headers={**operator_headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while reading
        yield body[: len(body) // 2]
        yield body[len(body) // 2 :]

    streamed = api.post(
        "/api/cameras", content=chunks(), headers={**operator_headers, "Content-Type": "application/json"}
    )
    assert streamed.status_code == 413
    assert "limit" in streamed.json()["detail"]


def test_put_changes_settings_and_refuses_unknown_or_mismatched_ids(
    api: TestClient, operator_headers: dict[str, str], redis_client: redis.Redis
) -> None:
    api.post("/api/cameras", json={"id": "gate", "source": RTSP}, headers=operator_headers)
    zone = {"points": [[0, 0], [0.5, 0], [0.5, 0.5]]}
    body = {"id": "gate", "source": RTSP, "threshold": 0.7, "ignore_zones": [zone]}
    assert api.put("/api/cameras/gate", json=body).status_code == 401
    changed = api.put("/api/cameras/gate", json=body, headers=operator_headers)
    assert changed.status_code == 200 and changed.json()["threshold"] == 0.7
    stored = CameraConfig.model_validate_json(redis_client.hget(keys.CAMERAS, "gate"))
    assert stored.threshold == 0.7 and len(stored.ignore_zones) == 1 and stored.source == RTSP
    assert (
        api.put("/api/cameras/gate", json={**body, "id": "door"}, headers=operator_headers).status_code == 422
    )
    missing = api.put("/api/cameras/door", json={**body, "id": "door"}, headers=operator_headers)
    assert missing.status_code == 404 and not redis_client.hexists(keys.CAMERAS, "door")


def test_patch_changes_only_the_fields_sent_and_keeps_the_real_source(
    api: TestClient, operator_headers: dict[str, str], redis_client: redis.Redis
) -> None:
    api.post("/api/cameras", json={"id": "gate", "source": RTSP, "fps": 5}, headers=operator_headers)
    zones = {"ignore_zones": [{"points": [[0, 0], [0.5, 0], [0.5, 0.5]]}]}
    assert api.patch("/api/cameras/gate", json=zones).status_code == 401
    changed = api.patch("/api/cameras/gate", json=zones, headers=operator_headers)
    assert changed.status_code == 200 and "hunter2" not in changed.text
    stored = CameraConfig.model_validate_json(redis_client.hget(keys.CAMERAS, "gate"))
    assert stored.source == RTSP and stored.fps == 5 and len(stored.ignore_zones) == 1
    bad = api.patch("/api/cameras/gate", json={"fps": 500}, headers=operator_headers)
    assert bad.status_code == 422 and "fps" in bad.text
    assert api.patch("/api/cameras/gate", json={"id": "door"}, headers=operator_headers).status_code == 422
    assert api.patch("/api/cameras/door", json=zones, headers=operator_headers).status_code == 404


def test_a_cameras_retention_is_set_through_the_api(
    api: TestClient, operator_headers: dict[str, str], redis_client: redis.Redis
) -> None:
    api.post("/api/cameras", json={"id": "gate", "source": RTSP}, headers=operator_headers)
    spans = {"retention": {"display_s": 600, "heat_s": 7 * 86400}}
    assert api.patch("/api/cameras/gate", json=spans, headers=operator_headers).status_code == 200
    stored = CameraConfig.model_validate_json(redis_client.hget(keys.CAMERAS, "gate"))
    assert stored.retention == schemas.CameraRetention(display_s=600, heat_s=7 * 86400)
    for bad in ({"display_s": 5}, {"display_s": "600"}, {"keep": 60}):
        refused = api.patch("/api/cameras/gate", json={"retention": bad}, headers=operator_headers)
        assert refused.status_code == 422, bad


def test_a_camera_whose_view_moved_says_so(
    api: TestClient, operator_headers: dict[str, str], redis_client: redis.Redis
) -> None:
    """The retraining worker served a model whose place map is silenced for one camera (its view moved):
    the cameras' endpoints say which, and the next model that knows the view again takes it back."""
    for camera in ("gate", "lobby"):
        assert api.post(
            "/api/cameras", json={"id": camera, "source": RTSP}, headers=operator_headers
        ).is_success
    assert not any(camera["view_moved"] for camera in api.get("/api/cameras").json())
    moved = schemas.ModelVersion(
        version="site-2", path="", kind="motion-appearance-place", place_silenced_cameras=["lobby"]
    )
    assert model_registry.publish(redis_client, moved, None)
    listed = {camera["id"]: camera["view_moved"] for camera in api.get("/api/cameras").json()}
    assert listed == {"gate": False, "lobby": True}
    assert api.get("/api/cameras/lobby").json()["view_moved"] is True
    fresh = schemas.ModelVersion(version="site-3", path="", kind="motion-appearance-place")
    assert model_registry.publish(redis_client, fresh, "site-2")
    assert api.get("/api/cameras/lobby").json()["view_moved"] is False
