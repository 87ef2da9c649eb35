"""Snoozing a camera or a zone from the API: stored for the inference worker, bounded, operator only."""

from __future__ import annotations

import time

import redis
from fastapi.testclient import TestClient

from workers.bus import keys
from workers.store.snoozes import active_snoozes

ZONE = {"points": [[0.0, 0.0], [0.5, 0.0], [0.5, 0.5]]}


def add_camera(api: TestClient, headers: dict[str, str]) -> None:
    assert (
        api.post("/api/cameras", json={"id": "gate", "source": "a.mp4"}, headers=headers).status_code == 201
    )


def test_snooze_camera_and_zone_then_end(
    api: TestClient, operator_headers: dict[str, str], redis_client: redis.Redis
) -> None:
    add_camera(api, operator_headers)
    assert api.get("/api/cameras/gate/snooze").json()["until_ts"] == 0
    before = time.time()
    whole = api.post("/api/cameras/gate/snooze", json={"duration_s": 600}, headers=operator_headers)
    assert whole.status_code == 200 and before + 600 <= whole.json()["until_ts"] <= time.time() + 600
    zoned = api.post(
        "/api/cameras/gate/snooze", json={"duration_s": 60, "zone": ZONE}, headers=operator_headers
    ).json()
    assert zoned["until_ts"] == whole.json()["until_ts"] and len(zoned["zones"]) == 1
    active = active_snoozes(redis_client, time.time())["gate"]
    assert active.zones[0].points == [(0.0, 0.0), (0.5, 0.0), (0.5, 0.5)]
    # past the zone's end only the camera-wide snooze is in force; past both, nothing
    assert active_snoozes(redis_client, time.time() + 120)["gate"].zones == []
    assert active_snoozes(redis_client, time.time() + 700) == {}
    assert api.delete("/api/cameras/gate/snooze", headers=operator_headers).status_code == 204
    assert not redis_client.hexists(keys.SNOOZES, "gate")


def test_snooze_errors(api: TestClient, operator_headers: dict[str, str]) -> None:
    assert (
        api.post("/api/cameras/nope/snooze", json={"duration_s": 5}, headers=operator_headers).status_code
        == 404
    )
    add_camera(api, operator_headers)
    assert api.post("/api/cameras/gate/snooze", json={"duration_s": 5}).status_code == 401
    for body in ({"duration_s": 0}, {"duration_s": 8 * 24 * 3600}, {"duration_s": "5"}, {}):
        answer = api.post("/api/cameras/gate/snooze", json=body, headers=operator_headers)
        assert answer.status_code == 422, body
    bad_zone = {"duration_s": 5, "zone": {"points": [[0, 0], [2, 0], [0, 1]]}}
    assert api.post("/api/cameras/gate/snooze", json=bad_zone, headers=operator_headers).status_code == 422
