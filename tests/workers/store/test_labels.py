"""The feedback label store against a real Redis: idempotency, latest label wins, alert ranges, paging,
proposals, and durability across Redis restarts (AOF)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import redis
from pydantic import ValidationError

from workers.bus import keys, schemas
from workers.bus.connection import EmbeddedRedis, connect, free_port
from workers.bus.schemas import Alert, FeedbackLabel
from workers.store import labels
from workers.store.labels import FeedbackRequest, UnknownTarget

CAMERA = "cam1"


@pytest.fixture
def client(redis_client: redis.Redis) -> redis.Redis:
    """The test Redis with CAMERA registered."""
    config = schemas.CameraConfig(id=CAMERA, source="test://frames")
    redis_client.hset(keys.CAMERAS, CAMERA, config.model_dump_json())
    return redis_client


def label(
    client: redis.Redis, start: int, end: int, verdict: str, **extra: object
) -> tuple[FeedbackLabel, bool]:
    request = FeedbackRequest(
        camera=extra.pop("camera", CAMERA), start_seq=start, end_seq=end, label=verdict, **extra
    )
    return labels.add_label(client, request)


def write_alert(
    client: redis.Redis, alert_id: str, *, start_seq: int, last_seq: int, closed: bool, peak: float = 0.9
) -> None:
    alert = Alert(
        id=alert_id,
        camera=CAMERA,
        state="closed" if closed else "open",
        start_ts=1000.0,
        end_ts=1010.0 if closed else None,
        start_seq=start_seq,
        end_seq=last_seq if closed else None,
        last_seq=last_seq,
        peak_score=peak,
        peak_seq=start_seq,
        peak_ts=1001.0,
        model="v1",
    )
    client.hset(keys.ALERTS, alert_id, alert.model_dump_json())


def test_posting_the_same_label_again_returns_the_existing_one(client: redis.Redis) -> None:
    first, created = label(client, 10, 20, "abnormal", category="cyclist", note="bike on the walkway")
    assert created and first.id == "1"
    again, created = label(client, 10, 20, "abnormal", category="cyclist", note="typed twice")
    assert not created and again == first
    other_category, created = label(client, 10, 20, "abnormal", category="cart")
    assert created and other_category.number > first.number
    assert [item.id for item in labels.camera_labels(client, CAMERA)] == [first.id, other_category.id]
    assert labels.get_label(client, first.id) == first


def test_the_latest_label_wins_and_history_is_kept(client: redis.Redis) -> None:
    label(client, 0, 9, "normal")
    label(client, 5, 14, "abnormal")
    label(client, 8, 8, "normal")
    assert labels.frame_labels(client, CAMERA, 0, 20) == {
        **dict.fromkeys(range(5), "normal"),
        **dict.fromkeys(range(5, 15), "abnormal"),
        8: "normal",
    }
    assert labels.frame_labels(client, CAMERA, 12, 100) == dict.fromkeys(range(12, 15), "abnormal")
    assert labels.frame_labels(client, "other", 0, 100) == {}
    assert len(labels.camera_labels(client, CAMERA)) == 3


def test_changing_a_verdict_back_records_a_new_label(client: redis.Redis) -> None:
    normal, _ = label(client, 0, 9, "normal")
    label(client, 0, 9, "abnormal")
    back, created = label(client, 0, 9, "normal")
    assert created and back.number > normal.number
    assert set(labels.frame_labels(client, CAMERA, 0, 9).values()) == {"normal"}
    # The same range again after a later overlapping label: it changes frames 3-4, so it is recorded anew.
    label(client, 3, 4, "abnormal")
    again, created = label(client, 0, 9, "normal")
    assert created and again.number > back.number
    assert set(labels.frame_labels(client, CAMERA, 0, 9).values()) == {"normal"}


def test_concurrent_identical_posts_make_one_label(client: redis.Redis, redis_url: str) -> None:
    results: list[tuple[FeedbackLabel, bool]] = []

    def post() -> None:
        own = connect(redis_url)
        results.append(label(own, 100, 120, "abnormal"))
        own.close()

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sum(created for _, created in results) == 1
    assert len({item.id for item, _ in results}) == 1
    assert len(labels.camera_labels(client, CAMERA)) == 1


def test_an_alert_labels_its_frames(client: redis.Redis) -> None:
    write_alert(client, "closed-alert", start_seq=40, last_seq=70, closed=True)
    write_alert(client, "open-alert", start_seq=200, last_seq=230, closed=False)
    closed, _ = labels.add_label(client, FeedbackRequest(alert_id="closed-alert", label="abnormal"))
    assert (closed.camera, closed.start_seq, closed.end_seq, closed.alert_id) == (
        CAMERA,
        40,
        70,
        "closed-alert",
    )
    still_open, _ = labels.add_label(client, FeedbackRequest(alert_id="open-alert", label="normal"))
    assert (still_open.start_seq, still_open.end_seq) == (200, 230)  # its frames so far
    with pytest.raises(UnknownTarget, match="no alert with id 'nope'"):
        labels.add_label(client, FeedbackRequest(alert_id="nope", label="normal"))
    with pytest.raises(UnknownTarget, match="no camera with id 'ghost'"):
        label(client, 0, 1, "normal", camera="ghost")


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"camera": CAMERA, "start_seq": 9, "end_seq": 3}, "before start_seq"),
        ({"camera": CAMERA, "start_seq": -1}, "greater than or equal to 0"),
        ({"camera": CAMERA, "start_seq": 0, "end_seq": labels.MAX_LABELLED_FRAMES}, "at most"),
        ({"camera": CAMERA}, "needs both camera and start_seq"),
        ({"start_seq": 3}, "needs both camera and start_seq"),
        ({}, "give either alert_id"),
        ({"alert_id": "a1", "camera": CAMERA, "start_seq": 1}, "give either alert_id"),
        ({"alert_id": "a1", "category": "x" * 41}, "category"),
        ({"alert_id": "a1", "category": "bad/char"}, "category"),
        ({"alert_id": "a1", "category": " padded"}, "category"),
        ({"alert_id": "a1", "note": "n" * 501}, "note"),
        ({"alert_id": "a1", "colour": "red"}, "colour"),
    ],
)
def test_invalid_requests_are_refused(fields: dict[str, object], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        FeedbackRequest(label="normal", **fields)


def test_one_frame_and_the_longest_range_are_accepted() -> None:
    assert FeedbackRequest(camera=CAMERA, start_seq=7, label="normal").end_seq == 7
    longest = FeedbackRequest(
        camera=CAMERA, start_seq=0, end_seq=labels.MAX_LABELLED_FRAMES - 1, label="normal"
    )
    assert longest.end_seq == labels.MAX_LABELLED_FRAMES - 1
    assert (
        FeedbackRequest(alert_id="a1", label="abnormal", category="slow cyclist_2").category
        == "slow cyclist_2"
    )


def test_delete_brings_back_the_earlier_verdict(client: redis.Redis) -> None:
    label(client, 0, 9, "normal")
    newer, _ = label(client, 0, 9, "abnormal")
    assert labels.delete_label(client, newer.id) == newer
    assert labels.delete_label(client, newer.id) is None
    assert labels.get_label(client, newer.id) is None
    assert set(labels.frame_labels(client, CAMERA, 0, 9).values()) == {"normal"}
    again, created = label(client, 0, 9, "abnormal")
    assert created and again.number > newer.number


def test_pages_cover_every_label_once_newest_first(
    client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(labels, "LABEL_SCAN_BATCH", 2)  # several index reads per page
    config = schemas.CameraConfig(id="cam2", source="test://frames")
    client.hset(keys.CAMERAS, "cam2", config.model_dump_json())
    for i in range(11):
        label(
            client,
            i * 10,
            i * 10 + 5,
            "abnormal" if i % 3 == 0 else "normal",
            camera=CAMERA if i % 2 else "cam2",
        )

    def pages(**filters: object) -> list[list[int]]:
        found, before = [], None
        while True:
            page = labels.list_labels(client, limit=2, before=before, **filters)
            found.append([item.number for item in page.labels])
            if page.next_before is None:
                return found
            before = page.next_before

    assert pages() == [[11, 10], [9, 8], [7, 6], [5, 4], [3, 2], [1]]
    assert pages(label="abnormal") == [[10, 7], [4, 1]]
    assert pages(camera=CAMERA) == [[10, 8], [6, 4], [2]]
    assert pages(camera=CAMERA, label="abnormal") == [[10, 4]]


def scores(camera: str, profile: dict[int, float]) -> list[schemas.ScoreMessage]:
    return [
        schemas.ScoreMessage(
            camera=camera,
            seq=seq,
            ts=1000.0 + seq / 10,
            frame_id=f"{seq}-0",
            score=score,
            raw=score,
            model="v1",
            anomalous=score > 0.5,
        )
        for seq, score in sorted(profile.items())
    ]


def test_proposals_are_separated_unlabelled_peaks_of_the_top_tenth() -> None:
    profile = dict.fromkeys(range(200), 0.1)
    profile.update({50: 0.99, 52: 0.98, 120: 0.95, 121: 0.94, 190: 0.9, 199: 0.85, 3: 0.8})
    profile.update({seq: 0.6 for seq in range(60, 73)})  # the rest of the top 20, a plateau
    found = labels.pick_proposals(scores(CAMERA, profile), {120}, k=5, adjacent=5)
    assert (found.scored_frames, found.top_frames) == (200, 20)
    assert [proposal.seq for proposal in found.proposals] == [50, 121, 190, 199, 3]
    assert [(proposal.start_seq, proposal.end_seq) for proposal in found.proposals] == [
        (45, 55),
        (116, 126),
        (185, 195),
        (194, 199),  # clipped to the last scored frame
        (0, 8),  # and to the first
    ]
    # With the peaks labelled, the plateau's frames come next, spaced by more than `adjacent`.
    labelled = {seq for seq, score in profile.items() if score >= 0.8}
    plateau = labels.pick_proposals(scores(CAMERA, profile), labelled, k=5, adjacent=2)
    assert [proposal.seq for proposal in plateau.proposals] == [60, 63, 66, 69, 72]
    # Frames below the top tenth are never proposed, even when every top frame is labelled.
    top = {seq for seq, score in profile.items() if score > 0.1}
    assert labels.pick_proposals(scores(CAMERA, profile), top, k=5, adjacent=5).proposals == []
    assert labels.pick_proposals([], set(), k=5, adjacent=5).proposals == []


def start_server(data_dir: Path, port: int) -> tuple[EmbeddedRedis, redis.Redis]:
    server = EmbeddedRedis(data_dir, port=port).start()
    return server, connect(server.url)


def test_labels_survive_a_redis_restart_and_a_crash(tmp_path: Path) -> None:
    port = free_port()
    server, client = start_server(tmp_path / "redis", port)
    try:
        write_alert(client, "a1", start_seq=40, last_seq=70, closed=True)
        client.hset(
            keys.CAMERAS, CAMERA, schemas.CameraConfig(id=CAMERA, source="test://frames").model_dump_json()
        )
        label(client, 0, 99, "normal")
        labels.add_label(client, FeedbackRequest(alert_id="a1", label="abnormal", category="cart"))
        before = labels.frame_labels(client, CAMERA, 0, 99)

        server.stop()  # SIGTERM: Redis writes its append-only file and exits
        server, client = start_server(tmp_path / "redis", port)
        assert labels.frame_labels(client, CAMERA, 0, 99) == before

        # A crash (kill -9) with fsync at every write keeps every acknowledged label.
        client.config_set("appendfsync", "always")
        newest, created = label(client, 45, 50, "normal", note="shadow")
        assert created
        server.process.kill()
        server.process.wait()
        server, client = start_server(tmp_path / "redis", port)
        assert labels.get_label(client, newest.id) == newest
        assert labels.frame_labels(client, CAMERA, 45, 50) == dict.fromkeys(range(45, 51), "normal")
        assert label(client, 45, 50, "normal") == (newest, False)  # the idempotency index survived too
        assert label(client, 200, 210, "abnormal")[0].number == newest.number + 1  # ids keep increasing
    finally:
        server.stop()


def test_the_peaks_of_labelled_alerts_follow_each_alert_s_latest_label(client: redis.Redis) -> None:
    for number, peak in enumerate([0.3, 0.45, 0.8, 0.6, 0.7], start=1):
        write_alert(
            client, f"a{number}", start_seq=10 * number, last_seq=10 * number + 5, closed=True, peak=peak
        )
    labels.add_label(client, FeedbackRequest(alert_id="a1", label="normal"))
    labels.add_label(client, FeedbackRequest(alert_id="a2", label="abnormal"))
    labels.add_label(client, FeedbackRequest(alert_id="a2", label="normal"))  # relabelled: normal now
    labels.add_label(client, FeedbackRequest(alert_id="a3", label="abnormal"))
    labels.add_label(client, FeedbackRequest(alert_id="a4", label="normal", category="cyclist"))  # a kind
    label(client, 50, 55, "normal")  # a range, not an alert: no peak of its own
    labels.add_label(client, FeedbackRequest(alert_id="a5", label="normal"))
    client.hdel(keys.ALERTS, "a5")  # an alert no longer stored no longer counts
    assert labels.alert_verdict_peaks(client, CAMERA) == ([0.3, 0.45], [0.8])
    assert labels.alert_verdict_peaks(client, "other") == ([], [])


def test_the_labels_version_changes_with_every_label_added_or_deleted(client: redis.Redis) -> None:
    empty = labels.labels_version(client, CAMERA)
    first, _ = label(client, 10, 20, "normal")
    one = labels.labels_version(client, CAMERA)
    label(client, 30, 40, "abnormal")
    two = labels.labels_version(client, CAMERA)
    labels.delete_label(client, first.id)
    assert len({empty, one, two, labels.labels_version(client, CAMERA)}) == 4
    label(client, 10, 20, "abnormal")  # the same frames again, another verdict: a new label
    assert labels.labels_version(client, CAMERA) != two


def test_a_kind_is_accepted_while_a_label_accepting_it_is_in_force(client: redis.Redis) -> None:
    config = schemas.CameraConfig(id="cam2", source="test://frames")
    client.hset(keys.CAMERAS, "cam2", config.model_dump_json())
    assert labels.accepted_kinds(client, [CAMERA, "cam2"]) == set()
    bikes, _ = label(client, 0, 9, "normal", category="bicycle")
    label(client, 20, 29, "normal")  # a false alarm: no kind
    label(client, 40, 49, "abnormal", category="cart")  # an anomaly: no kind either
    label(client, 0, 9, "normal", category="skateboard", camera="cam2")
    assert labels.accepted_kinds(client, [CAMERA, "cam2"]) == {"bicycle", "skateboard"}
    assert labels.accepted_kinds(client, [CAMERA]) == {"bicycle"}
    # a later label over part of its frames leaves the kind accepted; over all of them, in two parts, not
    label(client, 0, 4, "abnormal")
    assert labels.accepted_kinds(client, [CAMERA]) == {"bicycle"}
    later, _ = label(client, 3, 12, "abnormal", category="bicycle")
    assert labels.accepted_kinds(client, [CAMERA]) == set()
    # deleting the label that covered it brings the kind back; deleting the kind's own label withdraws it
    labels.delete_label(client, later.id)
    assert labels.accepted_kinds(client, [CAMERA]) == {"bicycle"}
    labels.delete_label(client, bikes.id)
    assert labels.accepted_kinds(client, [CAMERA]) == set()
