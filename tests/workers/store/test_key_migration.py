"""The key layout migration against a real Redis: a site written by the previous release (key layout 1:
alerts, labels, models, retraining history and the cameras' indexes under their old names) reads back
whole through the store after the migration; a second run and concurrent runs change nothing more."""

from __future__ import annotations

import logging
import threading
from collections import Counter

import pytest
import redis

from workers.bus import keys, schemas
from workers.bus.connection import connect
from workers.bus.schemas import Alert, AlertCategory, AlertEvent, ModelVersion, RetrainCycle
from workers.config import Settings
from workers.proc.process import WorkerProcess
from workers.store import alerts, labels, model_registry
from workers.store.key_migration import KEY_LAYOUT_VERSION, legacy_key_pairs, migrate_key_layout
from workers.store.labels import FeedbackRequest

CAMERAS = ("cam1", "cam2")


def old_camera_key(camera: str, kind: str) -> str:
    assert kind in keys.LEGACY_CAMERA_KEYS
    return f"{keys.camera_prefix(camera)}:{kind}"


def make_alert(alert_id: str, camera: str, start_ts: float) -> Alert:
    return Alert(
        id=alert_id,
        camera=camera,
        state="closed",
        start_ts=start_ts,
        end_ts=start_ts + 10,
        start_seq=100,
        end_seq=120,
        last_seq=120,
        peak_score=0.9,
        peak_seq=110,
        peak_ts=start_ts + 5,
        model="v1",
    )


def write_alert(client: redis.Redis, alert: Alert) -> None:
    score = alert.start_ts * 1000.0
    client.hset(keys.ALERTS, alert.id, alert.model_dump_json())
    client.zadd(keys.ALERTS_BY_TIME, {alert.id: score})
    client.zadd(keys.alerts_by_camera(alert.camera), {alert.id: score})
    client.xadd(keys.ALERT_EVENTS, AlertEvent.of("end", alert).to_fields())


def write_site(client: redis.Redis) -> None:
    """A site's records as the store writes them: two cameras' alerts with a category, labels, two model
    versions (the second current) and two retraining cycles."""
    for camera in CAMERAS:
        client.hset(
            keys.CAMERAS, camera, schemas.CameraConfig(id=camera, source="test://x").model_dump_json()
        )
    for number, camera in enumerate(CAMERAS):
        write_alert(client, make_alert(f"a{number}", camera, 1000.0 + number))
    client.xgroup_create(keys.ALERT_EVENTS, keys.MQTT_GROUP, id="0")
    category = AlertCategory(category="cyclist", confidence=1.0, source="operator")
    client.hset(keys.ALERT_CATEGORIES, "a0", category.model_dump_json())
    labels.add_label(client, FeedbackRequest(camera="cam1", start_seq=10, end_seq=20, label="abnormal"))
    labels.add_label(client, FeedbackRequest(camera="cam2", start_seq=5, end_seq=8, label="normal"))
    for version, parent in (("v1", None), ("v2", "v1")):
        model = ModelVersion(version=version, path="", parent=parent, kind="motion-appearance")
        assert model_registry.publish(client, model, parent)
    for accepted in (False, True):
        cycle = RetrainCycle(
            started_ts=1.0, seconds=2.0, cameras=["cam1"], window_frames=50, accepted=accepted, reason="r"
        )
        model_registry.record_cycle(client, cycle, {"cam1": 500})


def to_layout_1(client: redis.Redis) -> None:
    """Move every key to its name in the previous release, as an upgrading site's AOF holds them."""
    for old, new in keys.LEGACY_SITE_KEYS.items():
        if client.exists(new):
            client.rename(new, old)
    for camera in CAMERAS:
        for kind, new_name in keys.LEGACY_CAMERA_KEYS.items():
            if client.exists(new_name(camera)):
                client.rename(new_name(camera), old_camera_key(camera, kind))
    client.delete(keys.KEY_LAYOUT)


def alert_ids(client: redis.Redis, camera: str | None = None) -> list[str]:
    return [alert.id for alert in alerts.list_alerts(client, limit=10, camera=camera).alerts]


def assert_site_reads_back(client: redis.Redis) -> None:
    assert alert_ids(client) == ["a1", "a0"]
    for number, camera in enumerate(CAMERAS):
        assert alert_ids(client, camera) == [f"a{number}"]
    assert alerts.get_alert(client, "a0").category == "cyclist"  # type: ignore[union-attr]
    assert alerts.alert_totals(client) == (2, 2)
    assert [event.alert_id for _, event in alerts.read_alert_events(client, "0", count=10, block_ms=0)] == [
        "a0",
        "a1",
    ]
    groups = client.xinfo_groups(keys.ALERT_EVENTS)
    assert [group["name"] for group in groups] == [keys.MQTT_GROUP.encode()]
    assert [label.id for label in labels.list_labels(client, limit=10).labels] == ["2", "1"]
    assert [label.id for label in labels.list_labels(client, limit=10, camera="cam2").labels] == ["2"]
    assert labels.frame_labels(client, "cam1", 9, 11) == {10: "abnormal", 11: "abnormal"}
    assert model_registry.current_version(client).version == "v2"  # type: ignore[union-attr]
    assert {version.version for version in model_registry.list_versions(client)} == {"v1", "v2"}
    assert [cycle.accepted for cycle in model_registry.recent_cycles(client)] == [True, False]
    assert client.hget(keys.RETRAIN_CURSOR, "cam1") == b"500"
    assert legacy_key_pairs(client) == []


@pytest.fixture
def old_site(redis_client: redis.Redis) -> redis.Redis:
    write_site(redis_client)
    to_layout_1(redis_client)
    assert alert_ids(redis_client) == []  # what the upgrade alone would show
    return redis_client


def test_an_old_site_reads_back_whole_after_the_migration(old_site: redis.Redis) -> None:
    moved = len(keys.LEGACY_SITE_KEYS) - 1 + 2 * len(keys.LEGACY_CAMERA_KEYS)  # no descriptors written
    assert len(legacy_key_pairs(old_site)) == moved
    assert migrate_key_layout(old_site) == Counter(renamed=moved)
    assert old_site.get(keys.KEY_LAYOUT) == str(KEY_LAYOUT_VERSION).encode()
    assert not old_site.exists(keys.KEY_LAYOUT_LOCK)
    assert_site_reads_back(old_site)
    label, created = labels.add_label(
        old_site, FeedbackRequest(camera="cam1", start_seq=30, end_seq=40, label="normal")
    )
    assert created and label.id == "3"  # the label counter moved too: no id is given out twice


def test_a_second_run_changes_nothing(old_site: redis.Redis) -> None:
    assert migrate_key_layout(old_site)
    assert migrate_key_layout(old_site) is None
    old_site.delete(keys.KEY_LAYOUT)  # even without the marker, a rerun finds nothing to move
    assert migrate_key_layout(old_site) == Counter()
    assert_site_reads_back(old_site)


def test_concurrent_processes_migrate_once(old_site: redis.Redis, redis_url: str) -> None:
    start = threading.Barrier(4)
    results: list[Counter[str] | None] = []

    def migrate() -> None:
        client = connect(redis_url)
        start.wait()
        results.append(migrate_key_layout(client))
        client.close()

    threads = [threading.Thread(target=migrate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 4 and sum(result is not None for result in results) == 1
    assert_site_reads_back(old_site)


def test_a_process_waits_for_the_one_migrating(old_site: redis.Redis) -> None:
    old_site.set(keys.KEY_LAYOUT_LOCK, "another process", ex=60)
    threading.Timer(0.5, old_site.set, (keys.KEY_LAYOUT, KEY_LAYOUT_VERSION)).start()
    assert migrate_key_layout(old_site, wait_s=10) is None  # it waited for the marker, moved nothing
    with pytest.raises(TimeoutError, match="key_layout:lock"):
        old_site.delete(keys.KEY_LAYOUT)
        migrate_key_layout(old_site, wait_s=0.5)


def test_both_names_present_are_merged_or_kept_with_a_warning(
    old_site: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """Something of the new release wrote first: the old entries join the new keys; the label counter keeps
    the larger number; a stream and the current model keep the new value and leave the old key."""
    write_alert(old_site, make_alert("a9", "cam1", 2000.0))
    old_site.set(keys.FEEDBACK_LABEL_COUNTER, 1)
    old_site.set(keys.CURRENT_MODEL, "v1")
    with caplog.at_level(logging.WARNING):
        done = migrate_key_layout(old_site)
    assert done is not None and done["merged"] == 4 and done["kept"] == 2
    assert alert_ids(old_site, "cam1") == ["a9", "a0"]
    assert alert_ids(old_site) == ["a9", "a1", "a0"]
    assert old_site.get(keys.FEEDBACK_LABEL_COUNTER) == b"2"
    assert model_registry.current_version(old_site).version == "v1"  # type: ignore[union-attr]
    legacy = {new: old for old, new in keys.LEGACY_SITE_KEYS.items()}
    for key in (keys.ALERT_EVENTS, keys.CURRENT_MODEL):
        assert old_site.exists(legacy[key]) and legacy[key] in caplog.text


def test_a_redis_cluster_is_skipped(redis_cluster_url: str) -> None:
    client = connect(redis_cluster_url)
    assert migrate_key_layout(client) is None
    assert not client.exists(keys.KEY_LAYOUT)
    client.close()


class AlertReader(WorkerProcess):
    """A worker whose setup reads the alerts, as every worker's first reads follow its start."""

    role = "api"

    def setup(self) -> None:
        self.alerts_at_setup = alert_ids(self.redis)
        self.stop()

    def step(self) -> None:
        """Nothing: setup stopped the worker."""


def test_a_worker_migrates_before_its_setup(old_site: redis.Redis, redis_url: str) -> None:
    worker = AlertReader(Settings(redis_url=redis_url), redis_url)
    thread = threading.Thread(target=worker.run)  # not the main thread: the worker leaves signals alone
    thread.start()
    thread.join(timeout=30)
    assert worker.alerts_at_setup == ["a1", "a0"]
