"""WebSocket /ws/alerts: replay after last_id, then live events, with an optional camera filter."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from tests.service.conftest import AlertWriter

pytestmark = pytest.mark.timeout(60)


def test_replay_after_last_id_then_live(api: TestClient, write_alert: AlertWriter) -> None:
    _, first_id = write_alert("a1", event="new")
    _, second_id = write_alert("a1", event="update")
    _, third_id = write_alert("a2", camera="yard", event="new")

    with api.websocket_connect(f"/ws/alerts?last_id={first_id}") as ws:
        replayed = [ws.receive_json(), ws.receive_json()]
        assert [(event["id"], event["type"]) for event in replayed] == [
            (second_id, "update"),
            (third_id, "new"),
        ]
        assert replayed[1]["alert"]["id"] == "a2" and replayed[1]["alert"]["camera"] == "yard"
        alert, live_id = write_alert("a1", state="closed", event="end")
        live = ws.receive_json()
        assert live == {"id": live_id, "type": "end", "alert": alert.model_dump(mode="json")}

    # a client that reconnects with the last id it got misses nothing and gets nothing twice
    _, missed_id = write_alert("a3", event="new")
    with api.websocket_connect(f"/ws/alerts?last_id={live_id}") as ws:
        assert ws.receive_json()["id"] == missed_id


def test_without_last_id_only_new_events(api: TestClient, write_alert: AlertWriter) -> None:
    write_alert("old", event="new")
    with api.websocket_connect("/ws/alerts") as ws:
        time.sleep(0.5)  # the feed starts at the newest event once connected; let it get there first
        _, new_id = write_alert("a1", event="new")
        assert ws.receive_json()["id"] == new_id


def test_replay_everything_from_zero(api: TestClient, write_alert: AlertWriter) -> None:
    ids = [write_alert(f"a{i}")[1] for i in range(3)]
    with api.websocket_connect("/ws/alerts?last_id=0") as ws:
        assert [ws.receive_json()["id"] for _ in ids] == ids


def test_camera_filter(api: TestClient, write_alert: AlertWriter) -> None:
    write_alert("y1", camera="yard")
    _, gate_id = write_alert("g1", camera="gate")
    write_alert("y2", camera="yard")
    with api.websocket_connect("/ws/alerts?last_id=0&camera=gate") as ws:
        assert ws.receive_json()["id"] == gate_id
        write_alert("y3", camera="yard")
        _, live_gate_id = write_alert("g1", camera="gate", event="update")
        assert ws.receive_json()["id"] == live_gate_id


@pytest.mark.parametrize(
    "query", ["last_id=yesterday", "last_id=1-2-3", "last_id=99999999999999999999-0", "camera=bad%20id"]
)
def test_invalid_query_closes_with_a_reason(api: TestClient, query: str) -> None:
    with api.websocket_connect(f"/ws/alerts?{query}") as ws:
        error = ws.receive_json()["error"]
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert closed.value.code == 1008
    assert query.split("=")[0] in error
    assert closed.value.reason == error


def test_long_invalid_last_id_close_reason_fits(api: TestClient) -> None:
    with api.websocket_connect(f"/ws/alerts?last_id={'x' * 500}") as ws:
        assert "x" * 500 in ws.receive_json()["error"]
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert closed.value.code == 1008
    assert len(closed.value.reason.encode()) <= 123
