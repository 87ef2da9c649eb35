"""Security of the API and the logs: the operator token on every write, the optional read token on every
read, the alert WebSocket and the page (health probes open), constant-time comparison, CORS off unless
origins are listed, client WebSocket messages bounded, and credentials out of answers and log lines."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator

import pytest
import redis
from fastapi.routing import APIWebSocketRoute
from fastapi.testclient import TestClient
from starlette.routing import BaseRoute
from starlette.websockets import WebSocketDisconnect

from service.api import deps
from service.api.app import create_app
from service.api.routes.ws import MAX_CLIENT_MESSAGE_BYTES
from service.cli.commands.api import is_loopback
from service.cli.main import configure_logging
from tests.service.conftest import OPERATOR_TOKEN, AlertWriter, make_settings
from workers.bus import keys, schemas
from workers.proc.redaction import RedactingFilter
from workers.store.cameras import put_camera

pytestmark = pytest.mark.timeout(60)

READ_TOKEN = "r3ad-only-token"
PASSWORD = "hunter2-secret"
SECRET_SOURCE = f"rtsp://admin:{PASSWORD}@127.0.0.1:1/stream?token={PASSWORD}"
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
OPEN_PATHS = {"/healthz", "/readyz"}


@pytest.fixture
def guarded(redis_url: str) -> Iterator[TestClient]:
    """The app with both an operator and a read token."""
    settings = make_settings(redis_url, operator_token=OPERATOR_TOKEN, read_token=READ_TOKEN)
    with TestClient(create_app(settings)) as client:
        yield client


def concrete(path: str) -> str:
    """A route path with each {parameter} filled in with a valid id."""
    return re.sub(r"\{[^}]+\}", "cam1", path)


def operations(client: TestClient) -> list[tuple[str, str]]:
    """(METHOD, path) of every HTTP operation the app publishes in its OpenAPI schema."""
    return [
        (method.upper(), path)
        for path, item in client.app.openapi()["paths"].items()
        for method in item
        if method.upper() in WRITE_METHODS | {"GET"}
    ]


def websocket_paths(routes: list[BaseRoute]) -> list[str]:
    """Paths of every WebSocket route, also inside included routers."""
    found = []
    for route in routes:
        if isinstance(route, APIWebSocketRoute):
            found.append(route.path)
        elif hasattr(route, "original_router"):
            found += websocket_paths(route.original_router.routes)
        elif hasattr(route, "routes"):
            found += websocket_paths(route.routes)
    return found


def test_every_write_endpoint_needs_the_operator_token(api: TestClient) -> None:
    writes = [(method, path) for method, path in operations(api) if method in WRITE_METHODS]
    assert ("POST", "/api/cameras") in writes
    for method, path in writes:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}):
            response = api.request(method, concrete(path), headers=headers, json={})
            assert response.status_code == 401, (method, path, headers, response.status_code)
            assert response.headers["www-authenticate"] == "Bearer"


def test_tokens_are_compared_in_constant_time(
    api: TestClient, operator_headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = deps.hmac.compare_digest

    def spy(given: bytes, expected: bytes) -> bool:
        compared.append((given, expected))
        return real(given, expected)

    monkeypatch.setattr(deps.hmac, "compare_digest", spy)
    assert api.delete("/api/cameras/nope", headers=operator_headers).status_code == 404
    assert compared == [(OPERATOR_TOKEN.encode(), OPERATOR_TOKEN.encode())]


def test_read_token_guards_every_read_but_the_probes(guarded: TestClient) -> None:
    reads = [path for method, path in operations(guarded) if method == "GET"]
    assert "/api/alerts" in reads
    reads += ["/docs", "/openapi.json", "/", "/static/app.js"]  # the page and its files too
    for path in reads:
        response = guarded.get(concrete(path))
        if path in OPEN_PATHS:
            assert response.status_code != 401, path
            continue
        assert response.status_code == 401, (path, response.status_code)
        assert "read token" in response.json()["detail"]
        assert guarded.get(concrete(path), headers={"Authorization": "Bearer nope"}).status_code == 401
        for token in (READ_TOKEN, OPERATOR_TOKEN):  # an operator may read too
            answer = guarded.get(concrete(path), headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code != 401, (path, token)


def test_a_page_opened_with_the_token_in_the_query_gets_a_cookie_for_its_own_requests(
    guarded: TestClient,
) -> None:
    response = guarded.get("/api/cameras", params={"token": READ_TOKEN})
    assert response.status_code == 200
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{deps.TOKEN_COOKIE}={READ_TOKEN}") and "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert guarded.get("/api/alerts").status_code == 200  # the client sends the cookie back
    guarded.cookies.clear()
    assert guarded.get("/api/alerts").status_code == 401
    other_cookies = f"junk; theme=dark; {deps.TOKEN_COOKIE}={READ_TOKEN}"  # other apps' cookies on the host
    assert guarded.get("/api/alerts", headers={"Cookie": other_cookies}).status_code == 200
    assert guarded.get("/api/alerts", params={"token": "wrong"}).status_code == 401


def test_the_read_token_does_not_allow_writes(guarded: TestClient) -> None:
    body = {"id": "gate", "source": "/v.mp4"}
    refused = guarded.post("/api/cameras", json=body, headers={"Authorization": f"Bearer {READ_TOKEN}"})
    assert refused.status_code == 401 and refused.json()["detail"] == "wrong operator token"
    created = guarded.post("/api/cameras", json=body, headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
    assert created.status_code == 201


def test_alert_websocket_needs_the_read_token(guarded: TestClient, write_alert: AlertWriter) -> None:
    ws_paths = websocket_paths(guarded.app.routes)
    assert "/ws/alerts" in ws_paths
    for path in ws_paths:
        with pytest.raises(WebSocketDisconnect) as refused, guarded.websocket_connect(path):
            pass
        assert refused.value.code == 1008
    write_alert("a1")
    with guarded.websocket_connect(f"/ws/alerts?last_id=0&token={READ_TOKEN}") as ws:
        assert ws.receive_json()["alert"]["id"] == "a1"
    headers = {"Authorization": f"Bearer {READ_TOKEN}"}
    with guarded.websocket_connect("/ws/alerts?last_id=0", headers=headers) as ws:
        assert ws.receive_json()["alert"]["id"] == "a1"


def test_oversized_client_message_closes_the_feed(api: TestClient) -> None:
    with api.websocket_connect("/ws/alerts") as ws:
        ws.send_text("x" * 100)  # small messages are ignored
        ws.send_text("x" * (MAX_CLIENT_MESSAGE_BYTES + 1))
        closed = ws.receive()
    assert closed["type"] == "websocket.close" and closed["code"] == 1009


def test_cors_is_off_by_default(api: TestClient) -> None:
    preflight = api.options(
        "/api/cameras",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    response = api.get("/api/cameras", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers


def test_cors_allows_only_the_listed_origins(redis_url: str) -> None:
    settings = make_settings(redis_url, read_token=READ_TOKEN, cors_origins=["https://ops.example"])
    with TestClient(create_app(settings)) as client:
        preflight = client.options(
            "/api/cameras",
            headers={"Origin": "https://ops.example", "Access-Control-Request-Method": "GET"},
        )
        assert preflight.status_code == 200, "a preflight carries no token and must not be refused"
        assert preflight.headers["access-control-allow-origin"] == "https://ops.example"
        other = client.get(
            "/api/cameras",
            headers={"Origin": "https://evil.example", "Authorization": f"Bearer {READ_TOKEN}"},
        )
        assert other.status_code == 200 and "access-control-allow-origin" not in other.headers


def test_credentials_appear_in_no_answer(
    api: TestClient, redis_client: redis.Redis, write_alert: AlertWriter
) -> None:
    put_camera(redis_client, schemas.CameraConfig(id="cam1", source=SECRET_SOURCE))
    status = schemas.CameraStatus(
        camera="cam1", state="error", message=f"cannot open {SECRET_SOURCE}: refused"
    )
    redis_client.hset(keys.CAMERA_STATUS, "cam1", status.model_dump_json())
    write_alert("a1", camera="cam1")
    for method, path in operations(api):
        if method == "GET":
            response = api.get(concrete(path))
            assert PASSWORD not in response.text, path
    listed = api.get("/api/cameras").json()[0]
    assert listed["source"] == "rtsp://***@127.0.0.1:1/stream?token=***"
    assert PASSWORD not in listed["status"]["message"]


def test_log_lines_and_tracebacks_are_redacted() -> None:
    configure_logging("INFO")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        assert all(
            any(isinstance(f, RedactingFilter) for f in h.filters) for h in root.handlers if h is not handler
        ), "configure_logging installs the filter on every handler"
        log = logging.getLogger("vigil.test")
        log.info("opening %s", SECRET_SOURCE)
        try:
            raise ConnectionError(f"cannot reach {SECRET_SOURCE}")
        except ConnectionError:
            log.exception("camera failed")
        log.info('127.0.0.1:5000 - "GET /ws/alerts?last_id=0&token=%s HTTP/1.1" 101', PASSWORD)
    finally:
        root.removeHandler(handler)
    text = stream.getvalue()
    assert PASSWORD not in text
    assert "rtsp://***@127.0.0.1:1/stream?token=***" in text and "Traceback" in text
    assert "token=***" in text.splitlines()[-1]


def test_an_api_open_beyond_loopback_without_an_operator_token_is_pointed_out() -> None:
    assert all(is_loopback(host) for host in ("127.0.0.1", "::1", "localhost"))
    assert not any(is_loopback(host) for host in ("0.0.0.0", "10.0.0.5", "vigil.example"))
