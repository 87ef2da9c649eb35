from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import redis

from models.detector.base import Detector
from tests.waiting import wait_for
from workers.bus import keys, schemas
from workers.config import Settings
from workers.inference.worker import InferenceWorker

HEIGHT, WIDTH = 64, 96
# a still, textured view (optical flow has something to hold on to), the same for every test
BACKGROUND = cv2.GaussianBlur(
    np.random.default_rng(42).integers(60, 160, (HEIGHT, WIDTH)).astype(np.uint8), (5, 5), 0
)


def scene(seq: int, rng: np.random.Generator, square: bool) -> np.ndarray:
    """The view with sensor noise; with `square`, a bright square racing across it."""
    frame = np.clip(BACKGROUND + rng.normal(0, 2, BACKGROUND.shape), 0, 255).astype(np.uint8)
    if square:
        x = (seq * 4) % (WIDTH - 12)
        frame[20:32, x : x + 12] = 250
    return frame


def add_camera(client: redis.Redis, camera: str, retention: schemas.CameraRetention | None = None) -> None:
    config = schemas.CameraConfig(
        id=camera, source="test://frames", width=WIDTH, height=HEIGHT, retention=retention
    )
    client.hset(keys.CAMERAS, camera, config.model_dump_json())


def frame_message(camera: str, seq: int, gray: np.ndarray) -> schemas.FrameMessage:
    """Frame `seq` of a camera at 10 fps, as the ingest worker writes it."""
    height, width = gray.shape
    return schemas.FrameMessage(
        camera=camera,
        seq=seq,
        ts=1000.0 + seq / 10,
        session=0,
        width=width,
        height=height,
        gray=gray.tobytes(),
    )


def write_frames(client: redis.Redis, camera: str, anomalous: range, count: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for seq in range(count):
        message = frame_message(camera, seq, scene(seq, rng, square=seq in anomalous))
        client.xadd(keys.frames_stream(camera), message.to_fields())


def settings_for_test() -> Settings:
    settings = Settings(heartbeat_s=0.2)
    settings.inference.lease_ttl_ms = 600
    return settings


def scored_seqs(client: redis.Redis, camera: str) -> list[int]:
    return [int(fields[b"seq"]) for _, fields in client.xrange(keys.scores_stream(camera))]


def test_every_frame_scored_once_and_one_alert_for_the_anomaly(
    redis_client: redis.Redis, start_inference: Callable[[str], InferenceWorker]
) -> None:
    add_camera(redis_client, "cam1", schemas.CameraRetention(heat_s=7200.0))  # its own heat span
    write_frames(redis_client, "cam1", anomalous=range(60, 80), count=110)
    start_inference("w1")
    wait_for(lambda: len(scored_seqs(redis_client, "cam1")) == 110)
    assert scored_seqs(redis_client, "cam1") == list(range(110))
    events = [schemas.AlertEvent.from_fields(f) for _, f in redis_client.xrange(keys.ALERT_EVENTS)]
    assert [e.type for e in events if e.type != "update"] == ["new", "end"]
    alert = schemas.Alert.model_validate_json(redis_client.hget(keys.ALERTS, events[0].alert_id))
    # causal smoothing delays both ends by a few frames
    assert alert.state == "closed" and 60 <= alert.start_seq <= 64 and 78 <= alert.end_seq <= 84
    assert redis_client.xpending(keys.frames_stream("cam1"), keys.INFERENCE_GROUP)["pending"] == 0
    assert 3500 < redis_client.ttl(keys.error_map_key("cam1", alert.peak_seq)) <= 3600  # the site's span
    assert 7100 < redis_client.ttl(keys.heat_bucket_key("cam1", int(alert.peak_ts // 60))) <= 7200


def test_frames_of_a_dead_worker_are_claimed_and_scored_exactly_once(
    redis_client: redis.Redis, start_inference: Callable[[str], InferenceWorker]
) -> None:
    add_camera(redis_client, "cam1")
    stream = keys.frames_stream("cam1")
    redis_client.xgroup_create(stream, keys.INFERENCE_GROUP, id="0", mkstream=True)
    write_frames(redis_client, "cam1", anomalous=range(0), count=40)
    # A worker that took the camera, read 25 frames and died before writing anything.
    redis_client.set(keys.lease_key("cam1"), "dead-worker", px=500)
    read = redis_client.xreadgroup(keys.INFERENCE_GROUP, "dead-worker", {stream: ">"}, count=25)
    assert len(read[0][1]) == 25
    start_inference("w2")
    wait_for(lambda: len(scored_seqs(redis_client, "cam1")) >= 40)
    time.sleep(0.5)
    assert scored_seqs(redis_client, "cam1") == list(range(40))
    consumers = {c["name"] for c in redis_client.xinfo_consumers(stream, keys.INFERENCE_GROUP)}
    assert b"dead-worker" not in consumers and "dead-worker" not in consumers


def test_two_workers_share_cameras_and_score_everything_once(
    redis_client: redis.Redis, start_inference: Callable[[str], InferenceWorker]
) -> None:
    cameras = [f"cam{i}" for i in range(4)]
    for camera in cameras:
        add_camera(redis_client, camera)
    start_inference("wa")
    start_inference("wb")
    for i, camera in enumerate(cameras):
        write_frames(redis_client, camera, anomalous=range(0), count=30, seed=i)
    for camera in cameras:
        wait_for(lambda camera=camera: len(scored_seqs(redis_client, camera)) >= 30)
    time.sleep(0.3)
    for camera in cameras:
        assert scored_seqs(redis_client, camera) == list(range(30))

    def owners() -> set[bytes | None]:
        return {redis_client.get(keys.lease_key(camera)) for camera in cameras}

    # the first worker gives back half of its cameras when the second appears; until the second takes
    # them at its next refresh, they have no owner
    wait_for(lambda: owners() == {b"wa", b"wb"})
    assert owners() == {b"wa", b"wb"}


def test_an_invalid_stored_camera_is_skipped_and_the_others_are_scored(
    redis_client: redis.Redis, start_inference: Callable[[str], InferenceWorker]
) -> None:
    redis_client.hset(keys.CAMERAS, "broken", b'{"id": "broken"}')  # no source: not a valid config
    add_camera(redis_client, "cam1")
    write_frames(redis_client, "cam1", anomalous=range(0), count=20)
    worker = start_inference("w1")
    wait_for(lambda: len(scored_seqs(redis_client, "cam1")) == 20)
    assert list(worker.slots) == ["cam1"]


def test_the_lag_of_an_idle_camera_stays_its_last_scoring_latency(
    redis_client: redis.Redis, start_inference: Callable[[str], InferenceWorker]
) -> None:
    add_camera(redis_client, "cam1")
    now = time.time()
    for seq in range(5):  # captured 2 s ago, scored at once: about 2 s of lag
        message = frame_message("cam1", seq, BACKGROUND).model_copy(update={"ts": now - 2})
        redis_client.xadd(keys.frames_stream("cam1"), message.to_fields())
    worker = start_inference("w1")
    wait_for(lambda: len(scored_seqs(redis_client, "cam1")) == 5)
    lag = worker.status()["lag_s"]["cam1"]  # type: ignore[index]
    assert 2 <= lag < 10
    time.sleep(0.5)  # no frames come: the camera finished, the lag does not grow with the wall clock
    assert worker.status()["lag_s"]["cam1"] == lag  # type: ignore[index]


def test_a_published_adaptive_threshold_raises_a_camera_s_alert_threshold_never_lowers_it(
    redis_client: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    from models.detector.export import save_detector
    from tests.models.detector.test_runtime import tiny_detector
    from workers.store import model_files, model_registry

    site = Settings(data_dir=tmp_path / "site")
    detector = tiny_detector(0)
    camera = schemas.CameraConfig(id="cam", source="test://frames")
    current = None
    for version, adaptive, served in [("v1", 0.2, site.alerts.threshold), ("v2", 0.6, 0.6)]:
        path = site.models_dir / f"{version}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_detector(detector.model, detector.info.metadata | {"version": version}, path)
        published = schemas.ModelVersion(
            version=version, path=str(path), kind=detector.info.kind, alert_threshold=adaptive
        )
        assert model_registry.publish(redis_client, model_files.store(redis_client, published), current)
        current = version
        worker = InferenceWorker(site, redis_url, worker_id="w")
        worker.setup()
        assert worker.model_threshold == adaptive
        assert worker._new_slot(camera, 10.0).tracker.config.threshold == served
        own = camera.model_copy(update={"threshold": 0.1})  # a camera's own threshold still overrides
        assert worker._new_slot(own, 10.0).tracker.config.threshold == 0.1


def test_a_camera_slower_than_the_analysis_rate_smooths_and_alerts_over_the_same_times(
    redis_client: redis.Redis, redis_url: str
) -> None:
    add_camera(redis_client, "cam1")
    worker = InferenceWorker(settings_for_test(), redis_url, worker_id="w1")
    worker.setup()
    worker.refresh()  # not streaming yet: the analysis rate, 10 frames/s
    slot = worker.slots["cam1"]
    assert (slot.rate, slot.stream.scorer.config.smoothing, slot.tracker.config.start_frames) == (10, 5, 3)

    def streaming_at(fps: float) -> None:
        status = schemas.CameraStatus(camera="cam1", state="streaming", fps=fps)
        redis_client.hset(keys.CAMERA_STATUS, "cam1", status.model_dump_json())
        worker.refresh()

    streaming_at(9.2)  # a measurement that wobbles below the rate changes nothing
    assert worker.slots["cam1"].rate == 10
    streaming_at(5.0)  # the source gives 5 frames/s
    slot = worker.slots["cam1"]
    assert slot.rate == 5 and slot.stream.scorer.config.smoothing == 3
    assert (slot.tracker.config.start_frames, slot.tracker.config.end_frames) == (2, 5)
    worker.teardown()


def served_raw_scores(
    client: redis.Redis, redis_url: str, detector: Detector, video: np.ndarray, cameras: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """The raw scores an inference worker serving `detector` writes for `video` streamed by each camera."""
    height, width = detector.info.height, detector.info.width
    for camera in cameras:
        config = schemas.CameraConfig(id=camera, source="test://frames", width=width, height=height)
        client.hset(keys.CAMERAS, camera, config.model_dump_json())
        for seq, frame in enumerate(video):
            client.xadd(keys.frames_stream(camera), frame_message(camera, seq, frame).to_fields())
    worker = InferenceWorker(settings_for_test(), redis_url, worker_id="w", detector=detector)
    worker.setup()
    wait_for(lambda: worker.step() or all(len(scored_seqs(client, c)) == len(video) for c in cameras))
    return {
        camera: np.array([float(f[b"raw"]) for _, f in client.xrange(keys.scores_stream(camera))])
        for camera in cameras
    }


def test_a_camera_whose_view_the_place_map_no_longer_knows_is_scored_without_it(
    redis_client: redis.Redis, redis_url: str
) -> None:
    """One model serves two cameras whose walkers cross the lawn of the model's place map: on the camera the
    model names as moved (its map silenced for it alone), the place stream says nothing; the other still
    gets its evidence."""
    from models.detector.base import PLACE_SILENCED_CAMERAS
    from models.detector.runtime import TorchDetector
    from tests.models.conftest import walker_video, walkers_detector

    walkers = walkers_detector()
    detector = TorchDetector(walkers.model, {**walkers.info.metadata, PLACE_SILENCED_CAMERAS: ["lobby"]})
    video = walker_video(30, detector.info.width * 0.8, np.random.default_rng(3))
    raw = served_raw_scores(redis_client, redis_url, detector, video, ("gate", "lobby"))
    # the same frames: the other streams score them alike, the place stream only on the gate camera
    gate, lobby = raw["gate"], raw["lobby"]
    assert (gate > lobby + 1.0).any() and np.allclose(np.minimum(gate, lobby), lobby, atol=1e-4)


def test_each_camera_is_scored_in_its_own_view_of_the_model(
    redis_client: redis.Redis, redis_url: str
) -> None:
    """A model fitted to two cameras' footage keeps each one's view: the worker scores a camera's frames in
    it (the raw scores `vigil eval --camera` gives), and a camera it has no view of in the site's."""
    from models.detector.fitting import train_detector
    from models.detector.scores import raw_scores
    from models.detector.streams import DetectorConfig
    from models.scoring.camera import padded_clips
    from tests.models.conftest import two_camera_footage, walker_video

    videos, cameras = two_camera_footage()
    height, width = videos["path-0"].shape[1:]
    config = DetectorConfig(height=height, width=width, streams=("motion", "place"))
    detector = train_detector(videos, config, {}, cameras=cameras).detector
    video = walker_video(30, width * 0.75, np.random.default_rng(3))  # on the lane camera's path
    served = served_raw_scores(redis_client, redis_url, detector, video, ("path", "lane", "gate"))
    clips = padded_clips(video, np.arange(len(video)), detector.info.history)
    for camera, raw in served.items():
        expected = raw_scores(detector, detector.served_maps(clips, [camera] * 30), [camera] * 30)
        assert np.allclose(raw, expected, atol=1e-3), camera
    assert np.median(served["path"]) > np.median(served["lane"])  # where the path camera's walkers never go
