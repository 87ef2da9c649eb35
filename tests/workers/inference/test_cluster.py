"""The inference worker on a real Redis Cluster (three masters, three replicas on loopback): cameras spread
over the nodes are scored exactly once, alert events pass through the cameras' outboxes once, and a master
killed mid-stream (its replica behind, so that acknowledged frames are lost) fails over with nothing scored
twice and every frame Redis lost counted as dropped."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from tests.redis_cluster import RedisClusterNodes, start_redis_cluster
from tests.waiting import wait_for
from tests.workers.inference.test_worker import (
    add_camera,
    frame_message,
    scene,
    write_frames,
)
from workers.bus import keys, schemas
from workers.bus.connection import connect
from workers.inference import alert_writes
from workers.inference.worker import InferenceWorker

pytestmark = pytest.mark.cluster

CAMERAS = [f"cam{i}" for i in range(6)]


def scored(client: redis.Redis, camera: str) -> list[int]:
    return [int(fields[b"seq"]) for _, fields in client.xrange(keys.scores_stream(camera))]


def dropped(client: redis.Redis, camera: str) -> int:
    return int(client.hget(keys.scorer_state_key(camera), keys.DROPPED_FIELD) or 0)


def test_cameras_on_every_master_are_scored_once_with_their_alerts(
    redis_cluster_nodes: RedisClusterNodes,
    redis_cluster_url: str,
    start_inference: Callable[..., InferenceWorker],
) -> None:
    client = connect(redis_cluster_url)
    nodes = {redis_cluster_nodes.port_of(keys.frames_stream(camera)) for camera in CAMERAS}
    assert len(nodes) >= 2, "the cameras' keys should spread over the masters"
    for index, camera in enumerate(CAMERAS):
        add_camera(client, camera)
        write_frames(client, camera, anomalous=range(40, 60), count=90, seed=index)
    start_inference("wa", redis_cluster_url)
    start_inference("wb", redis_cluster_url)
    for camera in CAMERAS:
        wait_for(lambda camera=camera: len(scored(client, camera)) >= 90, 60)
    time.sleep(0.5)
    events = [schemas.AlertEvent.from_fields(f) for _, f in client.xrange(keys.ALERT_EVENTS)]
    for camera in CAMERAS:
        assert scored(client, camera) == list(range(90))
        assert client.xpending(keys.frames_stream(camera), keys.INFERENCE_GROUP)["pending"] == 0
        assert client.xlen(keys.alert_outbox(camera)) == 0
        types = [event.type for event in events if event.camera == camera and event.type != "update"]
        assert types == ["new", "end"]
    event_ids = [event.event_id for event in events]
    assert None not in event_ids and len(set(event_ids)) == len(event_ids)
    alert_ids = {event.alert_id for event in events}
    assert client.zcard(keys.ALERTS_BY_TIME) == len(alert_ids) == len(CAMERAS)
    assert all(client.hget(keys.ALERTS, alert_id) for alert_id in alert_ids)


def test_an_outbox_entry_published_before_a_crash_is_not_published_again(
    redis_cluster_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = connect(redis_cluster_url)
    alert = schemas.Alert(
        id="cam0-1", camera="cam0", state="open", start_ts=1000.0, start_seq=5, last_seq=7,
        peak_score=0.9, peak_seq=6, peak_ts=1000.6, model="motion",
    )  # fmt: skip
    client.xadd(keys.alert_outbox("cam0"), schemas.AlertEvent.of("new", alert).to_fields())

    def crash(*_: object) -> None:
        raise redis.ConnectionError("the worker died before it emptied its outbox")

    monkeypatch.setattr(client, "xdel", crash)
    with pytest.raises(redis.ConnectionError):
        alert_writes.publish_outbox(client, "cam0")
    monkeypatch.undo()
    assert client.xlen(keys.ALERT_EVENTS) == 1 and client.xlen(keys.alert_outbox("cam0")) == 1
    assert alert_writes.publish_outbox(client, "cam0", recovering=True) == 0  # the next owner
    assert client.xlen(keys.ALERT_EVENTS) == 1 and client.xlen(keys.alert_outbox("cam0")) == 0
    assert schemas.Alert.model_validate_json(client.hget(keys.ALERTS, "cam0-1")) == alert


class FrameWriter(threading.Thread):
    """Writes `count` frames per camera as the ingest worker does (entry ids carry the seq, so a retried
    write never stores a frame twice), retrying each until the cluster takes it."""

    def __init__(self, url: str, cameras: list[str], count: int, fps: float) -> None:
        super().__init__(daemon=True)
        self.client = connect(url, timeout_s=1.0)
        self.cameras, self.count, self.period = cameras, count, 1.0 / fps
        self.written = 0

    def run(self) -> None:
        rng = np.random.default_rng(0)
        for seq in range(self.count):
            for camera in self.cameras:
                message = frame_message(camera, seq, scene(seq, rng, square=seq % 50 >= 35))
                self._write(camera, f"{seq + 1}-{seq}", message)
            self.written = seq + 1
            time.sleep(self.period)

    def _write(self, camera: str, entry_id: str, message: schemas.FrameMessage) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                self.client.xadd(keys.frames_stream(camera), message.to_fields(), id=entry_id)
                return
            except redis.ResponseError as exc:
                if "equal or smaller" in str(exc):
                    return  # stored before the error reached us
                if time.monotonic() > deadline:
                    raise
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.1)


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[RedisClusterNodes]:
    """A cluster of the test's own (it loses a node); stopped after the workers (fixture order)."""
    nodes = start_redis_cluster(tmp_path)
    yield nodes
    nodes.stop()


def test_a_master_killed_mid_stream_fails_over_and_nothing_is_scored_twice(
    own_cluster: RedisClusterNodes, start_inference: Callable[..., InferenceWorker]
) -> None:
    nodes = own_cluster
    client = connect(nodes.url)
    cameras = CAMERAS[:4]
    for camera in cameras:
        add_camera(client, camera)
        client.xgroup_create(keys.frames_stream(camera), keys.INFERENCE_GROUP, id="0", mkstream=True)
    frames = 200
    writer = FrameWriter(nodes.url, cameras, frames, fps=40)
    writer.start()
    start_inference("survivor", nodes.url)
    wait_for(lambda: writer.written >= frames // 3, 30)
    victim = nodes.port_of(keys.frames_stream(cameras[0]))
    # Writes the master acknowledges but its replica never gets: the replica stops reading its replication
    # stream, 40 MB of display JPEGs in the camera's slot fill the stream's buffers, so the frames written
    # after them are still in the master's output buffer when it dies.
    replica = nodes.replica_of(victim)
    nodes.pause(replica)
    try:
        for _ in range(40):
            client.xadd(keys.display_stream(cameras[0]), {"jpeg": bytes(1 << 20)})
        written = writer.written
        wait_for(lambda: writer.written >= written + 10, 10)
        nodes.kill(victim)
    finally:
        nodes.resume(replica)
    writer.join(60)
    assert not writer.is_alive()
    wait_for(lambda: nodes.port_of(keys.frames_stream(cameras[0])) != victim, 30)  # failed over

    def accounted(camera: str) -> bool:
        seqs = scored(client, camera)
        return bool(seqs) and seqs[-1] == frames - 1 and len(set(seqs)) + dropped(client, camera) == frames

    for camera in cameras:
        wait_for(lambda camera=camera: accounted(camera), 60)
        seqs = scored(client, camera)
        assert len(seqs) == len(set(seqs)), f"{camera}: a frame was scored twice"
        assert seqs == sorted(seqs)
        assert client.xpending(keys.frames_stream(camera), keys.INFERENCE_GROUP)["pending"] == 0
    assert dropped(client, cameras[0]) > 0, "the failover lost frames: they must be counted as dropped"
