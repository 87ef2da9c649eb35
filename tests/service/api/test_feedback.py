"""Feedback endpoints over a real Redis: labels by range or by alert, the operator token, paging, and
proposals from a score stream written the way the inference worker writes it."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from tests.service.conftest import AlertWriter
from workers.bus import keys, schemas
from workers.store import labels

CAMERA = "cam1"
T0 = 1_700_000_000.0
FPS = 10


@pytest.fixture
def camera(redis_client: redis.Redis) -> str:
    config = schemas.CameraConfig(id=CAMERA, source="test://frames")
    redis_client.hset(keys.CAMERAS, CAMERA, config.model_dump_json())
    return CAMERA


def post(api: TestClient, headers: dict[str, str], **body: Any) -> Any:
    return api.post("/api/feedback", json=body, headers=headers)


def test_label_round_trip(api: TestClient, operator_headers: dict[str, str], camera: str) -> None:
    body = {"camera": camera, "start_seq": 100, "end_seq": 150, "label": "abnormal", "category": "cyclist"}
    created = post(api, operator_headers, **body, note="bike on the lawn")
    assert created.status_code == 201, created.text
    saved = created.json()
    assert saved["id"] == "1" and saved["start_seq"] == 100 and saved["end_seq"] == 150
    assert saved["note"] == "bike on the lawn" and saved["detail"] == "Label 1: frames 100-150 of cam1."

    again = post(api, operator_headers, **body)
    assert again.status_code == 200 and again.json()["id"] == "1"
    assert again.json()["detail"].startswith("Already recorded as label 1")

    stored = api.get("/api/feedback/1")
    assert stored.status_code == 200
    assert stored.json() == {
        key: value for key, value in saved.items() if key not in ("detail", "label_threshold")
    }
    assert saved["label_threshold"] is None  # a range, not an alert: the threshold stays as configured
    listed = api.get("/api/feedback").json()
    assert [item["id"] for item in listed["items"]] == ["1"] and listed["next_cursor"] is None

    assert api.delete("/api/feedback/1", headers=operator_headers).status_code == 204
    assert api.get("/api/feedback/1").status_code == 404
    missing = api.delete("/api/feedback/1", headers=operator_headers)
    assert missing.status_code == 404 and missing.json()["detail"] == "no label with id '1'"


def test_the_console_labels_an_alert(
    api: TestClient,
    operator_headers: dict[str, str],
    write_alert: AlertWriter,
    redis_client: redis.Redis,
    camera: str,
) -> None:
    alert, _ = write_alert("a1", state="open")  # frames 10..60 so far
    answer = post(api, operator_headers, alert_id="a1", label="abnormal")  # what app.js sends
    assert answer.status_code == 201, answer.text
    saved = answer.json()
    assert (saved["camera"], saved["start_seq"], saved["end_seq"], saved["alert_id"]) == (
        "cam1",
        10,
        60,
        "a1",
    )
    assert saved["detail"] == "Label 1: frames 10-60 of cam1."  # the console shows it after its thank-you
    assert saved["label_threshold"] is None  # confirmed: nothing to raise
    assert labels.frame_labels(redis_client, alert.camera, 0, 100) == dict.fromkeys(range(10, 61), "abnormal")
    answer = post(api, operator_headers, alert_id="a1", label="normal")  # a false alert after all
    assert answer.json()["label_threshold"] == 0.5  # its peak (0.9) is above the ceiling
    assert answer.json()["detail"].endswith(
        "cam1 now pages only over a score of 0.50 where its threshold is lower (its labelled alerts ask "
        "for it; in force within 10 s)."
    )
    assert api.get(f"/api/cameras/{camera}").json()["label_threshold"] == 0.5  # shown with the camera too


def test_writes_need_the_operator_token(api: TestClient, camera: str) -> None:
    body = {"camera": camera, "start_seq": 1, "label": "normal"}
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        refused = api.post("/api/feedback", json=body, headers=headers)
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert api.delete("/api/feedback/1", headers=headers).status_code == 401
    assert api.get("/api/feedback").json()["items"] == []


def test_unknown_alert_or_camera_is_a_404_that_says_so(
    api: TestClient, operator_headers: dict[str, str]
) -> None:
    unknown_alert = post(api, operator_headers, alert_id="nope", label="normal")
    assert unknown_alert.status_code == 404 and unknown_alert.json()["detail"] == "no alert with id 'nope'"
    unknown_camera = post(api, operator_headers, camera="ghost", start_seq=0, end_seq=5, label="normal")
    assert (
        unknown_camera.status_code == 404 and unknown_camera.json()["detail"] == "no camera with id 'ghost'"
    )
    assert api.get("/api/feedback/42").json() == {"detail": "no label with id '42'"}


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"start_seq": 10, "end_seq": 5}, "end_seq 5 is before start_seq 10"),
        ({"start_seq": -1, "end_seq": 5}, "greater than or equal to 0"),
        ({"start_seq": 0, "end_seq": labels.MAX_LABELLED_FRAMES}, "at most 1000000 frames"),
        ({"start_seq": "3"}, "valid integer"),
        ({"start_seq": 1, "label": "maybe"}, "'normal' or 'abnormal'"),
        ({"start_seq": 1, "category": "bad/category"}, "pattern"),
        ({"start_seq": 1, "note": "x" * 501}, "at most 500"),
        ({"start_seq": 1, "alert_id": "a1"}, "either alert_id"),
    ],
)
def test_bad_requests_are_422(
    api: TestClient, operator_headers: dict[str, str], camera: str, body: dict[str, Any], problem: str
) -> None:
    answer = post(api, operator_headers, **{"camera": camera, "label": "abnormal", **body})
    assert answer.status_code == 422, answer.text
    assert problem in str(answer.json()["detail"])


def test_a_range_longer_than_the_buffer_is_accepted(
    api: TestClient, operator_headers: dict[str, str], camera: str
) -> None:
    last = labels.MAX_LABELLED_FRAMES - 1
    answer = post(api, operator_headers, camera=camera, start_seq=0, end_seq=last, label="normal")
    assert answer.status_code == 201 and answer.json()["end_seq"] == last


def test_list_filters_and_cursor_pages(
    api: TestClient, operator_headers: dict[str, str], camera: str
) -> None:
    for seq in range(5):
        post(
            api,
            operator_headers,
            camera=camera,
            start_seq=seq * 10,
            label="abnormal" if seq % 2 else "normal",
        )

    def ids(**params: Any) -> list[list[str]]:
        pages, cursor = [], None
        while True:
            page = api.get(
                "/api/feedback", params={**params, **({"cursor": cursor} if cursor else {})}
            ).json()
            pages.append([item["id"] for item in page["items"]])
            cursor = page["next_cursor"]
            if cursor is None:
                return pages

    assert ids(limit=2) == [["5", "4"], ["3", "2"], ["1"]]
    assert ids(label="abnormal") == [["4", "2"]]
    assert ids(camera=camera, label="normal", limit=2) == [["5", "3"], ["1"]]
    assert ids(camera="elsewhere") == [[]]
    bad = api.get("/api/feedback", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 422


def write_scores(client: redis.Redis, camera: str, profile: dict[int, float]) -> None:
    """Score entries as the inference worker adds them (capped stream, one per scored frame)."""
    for seq, score in sorted(profile.items()):
        message = schemas.ScoreMessage(
            camera=camera,
            seq=seq,
            ts=T0 + seq / FPS,
            frame_id=f"{int(T0 * 1000) + seq * 100}-0",
            score=score,
            raw=score * 3,
            model="v1",
            anomalous=score >= 0.5,
        )
        client.xadd(keys.scores_stream(camera), message.to_fields(), maxlen=10_000, approximate=True)


def write_display_frames(client: redis.Redis, camera: str, seqs: range) -> None:
    """Display JPEGs as the ingest worker stores them: stream ids are capture times in ms."""
    for seq in seqs:
        ts = T0 + seq / FPS
        message = schemas.DisplayMessage(camera=camera, seq=seq, ts=ts, jpeg=b"\xff\xd8 not decoded here")
        client.xadd(keys.display_stream(camera), message.to_fields(), id=f"{int(ts * 1000)}-0")


def test_proposals_are_the_top_unlabelled_peaks_with_their_adjacent_frames(
    api: TestClient, operator_headers: dict[str, str], camera: str, redis_client: redis.Redis
) -> None:
    profile = {seq: 0.05 + (seq % 7) / 100 for seq in range(300)}  # background, all under 0.2
    peaks = {40: 0.97, 42: 0.96, 100: 0.95, 160: 0.93, 230: 0.91, 295: 0.9, 270: 0.88, 20: 0.85}
    profile.update(peaks)
    write_scores(redis_client, camera, profile)
    write_display_frames(redis_client, camera, range(0, 200, FPS))  # display images up to frame 190 only
    post(api, operator_headers, camera=camera, start_seq=98, end_seq=103, label="normal")  # covers peak 100

    answer = api.get("/api/feedback/proposals", params={"camera": camera, "k": 5, "adjacent": 5})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["camera"], body["scored_frames"], body["top_frames"]) == (camera, 300, 30)
    items = body["items"]
    # 42 is within 5 frames of 40 (higher), 100 is labelled already.
    assert [item["seq"] for item in items] == [40, 160, 230, 295, 270]
    assert [(item["start_seq"], item["end_seq"]) for item in items] == [
        (35, 45),
        (155, 165),
        (225, 235),
        (290, 299),  # clipped to the newest scored frame
        (265, 275),
    ]
    assert items[0]["score"] == 0.97 and items[0]["ts"] == pytest.approx(T0 + 4.0)
    assert items[0]["image_url"] == f"/api/cameras/{camera}/display/{int((T0 + 4.0) * 1000)}-0.jpg"
    assert api.get(items[0]["image_url"]).status_code == 200  # served by the display-frame route
    assert items[1]["image_url"] is not None and items[2]["image_url"] is None  # no display image kept there

    # Labelling the proposals (as the paper does, with their adjacent frames) brings the next peaks up.
    for item in items:
        post(
            api,
            operator_headers,
            camera=camera,
            start_seq=item["start_seq"],
            end_seq=item["end_seq"],
            label="abnormal",
        )
    following = api.get("/api/feedback/proposals", params={"camera": camera, "k": 5, "adjacent": 5}).json()
    assert [item["seq"] for item in following["items"]] == [20, 6, 13, 27, 34]  # then the background
    assert all(item["score"] < 0.2 for item in following["items"][1:])


def test_proposals_of_an_unknown_or_quiet_camera(api: TestClient, camera: str) -> None:
    unknown = api.get("/api/feedback/proposals", params={"camera": "ghost"})
    assert unknown.status_code == 404 and unknown.json()["detail"] == "no camera with id 'ghost'"
    quiet = api.get("/api/feedback/proposals", params={"camera": camera}).json()
    assert quiet == {"camera": camera, "scored_frames": 0, "top_frames": 0, "items": []}
    assert api.get("/api/feedback/proposals", params={"camera": camera, "k": 0}).status_code == 422
