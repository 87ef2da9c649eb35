"""Alert endpoints over alerts written with the inference worker's layout."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.service.conftest import AlertWriter
from workers.store import alerts as alert_store

T0 = 1_700_000_000.0


def all_pages(api: TestClient, **params: Any) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor = None
    while True:
        response = api.get("/api/alerts", params={**params, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append([alert["id"] for alert in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


def test_newest_first_with_filters(api: TestClient, write_alert: AlertWriter) -> None:
    write_alert("a1", camera="gate", start_ts=T0, state="closed")
    write_alert("a2", camera="yard", start_ts=T0 + 10)
    write_alert("a3", camera="gate", start_ts=T0 + 20)
    write_alert("a4", camera="gate", start_ts=T0 + 30, state="closed")

    body = api.get("/api/alerts").json()
    assert [alert["id"] for alert in body["items"]] == ["a4", "a3", "a2", "a1"]
    assert body["next_cursor"] is None
    assert body["items"][0]["camera"] == "gate" and body["items"][0]["state"] == "closed"

    def ids(**params: Any) -> list[str]:
        return [alert["id"] for alert in api.get("/api/alerts", params=params).json()["items"]]

    assert ids(camera="gate") == ["a4", "a3", "a1"]
    assert ids(state="open") == ["a3", "a2"]
    assert ids(camera="gate", state="closed") == ["a4", "a1"]
    assert ids(since=T0 + 10) == ["a4", "a3", "a2"]
    assert ids(since="2023-11-14T22:13:40Z") == ["a4", "a3"]  # T0 + 20 s
    assert ids(since="2023-11-14T23:13:40+01:00") == ["a4", "a3"]
    assert ids(camera="nowhere") == []


def test_iso_since_without_zone_is_utc(api: TestClient, write_alert: AlertWriter) -> None:
    write_alert("a1", start_ts=T0)
    write_alert("a2", start_ts=T0 + 60)
    items = api.get("/api/alerts", params={"since": "2023-11-14T22:14:00"}).json()["items"]  # T0 + 40 s
    assert [alert["id"] for alert in items] == ["a2"]


def test_cursor_pages_are_stable_under_inserts(api: TestClient, write_alert: AlertWriter) -> None:
    for i in range(7):
        write_alert(f"a{i}", start_ts=T0 + i)
    write_alert("b3", start_ts=T0 + 3)  # same start time as a3: ties are ordered too

    first = api.get("/api/alerts", params={"limit": 3}).json()
    assert [alert["id"] for alert in first["items"]] == ["a6", "a5", "a4"]
    write_alert("new", start_ts=T0 + 100)  # newer alerts arriving must not shift later pages
    second = api.get("/api/alerts", params={"limit": 3, "cursor": first["next_cursor"]}).json()
    assert [alert["id"] for alert in second["items"]] == ["b3", "a3", "a2"]
    third = api.get("/api/alerts", params={"limit": 3, "cursor": second["next_cursor"]}).json()
    assert [alert["id"] for alert in third["items"]] == ["a1", "a0"]
    assert third["next_cursor"] is None


def test_pagination_with_a_state_filter_covers_every_match_once(
    api: TestClient, write_alert: AlertWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(alert_store, "ALERT_SCAN_BATCH", 2)  # several index reads per page
    for i in range(30):
        write_alert(f"a{i:02d}", start_ts=T0 + i, state="open" if i % 3 == 0 else "closed")
    pages = all_pages(api, state="open", limit=4)
    assert [len(page) for page in pages] == [4, 4, 2]
    assert [alert_id for page in pages for alert_id in page] == [f"a{i:02d}" for i in range(27, -1, -3)]


def test_query_validation(api: TestClient) -> None:
    for params in (
        {"limit": 0},
        {"limit": 501},
        {"state": "maybe"},
        {"since": "yesterday"},
        {"since": "nan"},
        {"cursor": "not-a-cursor"},
        {"camera": "bad id"},
    ):
        response = api.get("/api/alerts", params=params)
        assert response.status_code == 422, params
        assert response.json()["detail"]


def test_get_one_alert(api: TestClient, write_alert: AlertWriter) -> None:
    alert, _ = write_alert("a1", camera="gate")
    assert api.get("/api/alerts/a1").json() == alert.model_dump(mode="json")
    missing = api.get("/api/alerts/nope")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "no alert with id 'nope'"}
