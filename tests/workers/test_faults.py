"""Faults and hostile input for the workers: a stream that changes resolution, 4K footage, files that are
not video, frames lost to a Redis outage or the stream cap (scored or counted, never silently lost), a
consumer group lost with a Redis restart, and weights files that are not a model."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import cv2
import numpy as np
import psutil
import pytest
import redis
import torch

from models.detector.export import save_detector
from models.detector.motion import MotionBaseline
from tests.models.detector.test_runtime import tiny_detector
from tests.waiting import wait_for
from tests.workers.conftest import RtspServer, RunIngest, ingest_settings
from tests.workers.inference.test_worker import (
    HEIGHT,
    WIDTH,
    add_camera,
    frame_message,
    scored_seqs,
    write_frames,
)
from tests.workers.ingest.test_worker import frames, state_is, status
from workers.bus import keys, schemas
from workers.bus.connection import EmbeddedRedis, connect
from workers.bus.keys import DROPPED_FIELD
from workers.config import Settings
from workers.inference.worker import InferenceWorker
from workers.ingest.clips import write_clip
from workers.ingest.demo import demo_frames, write_demo_clip
from workers.ingest.worker import IngestWorker
from workers.proc.process import STALE_HEARTBEAT_S
from workers.retrain.worker import RetrainWorker
from workers.store.cameras import put_camera

pytestmark = pytest.mark.timeout(90)
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def write_ts(path: Path, size: tuple[int, int], seconds: float, fps: int = 10, seed: int = 0) -> Path:
    """An H.264 MPEG-TS clip of the demo scene (TS clips concatenate byte-wise into one stream)."""
    write_clip(path, demo_frames(seconds, fps, size, seed), fps)
    return path


@pytest.mark.rtsp
def test_rtsp_stream_that_changes_resolution_keeps_streaming(
    gstreamer_rtsp: None, run_ingest: RunIngest, redis_client: redis.Redis, tmp_path: Path
) -> None:
    small = write_ts(tmp_path / "small.ts", (360, 240), seconds=3)
    large = write_ts(tmp_path / "large.ts", (640, 360), seconds=3, seed=1)
    both = tmp_path / "both.ts"
    both.write_bytes(small.read_bytes() + large.read_bytes())
    server = RtspServer(file=both).start()  # streams it once, then the stream ends like a camera going away
    try:
        put_camera(redis_client, schemas.CameraConfig(id="gate", source=server.url()))
        run_ingest(realtime=True)
        wait_for(lambda: len(frames(redis_client, "gate")) >= 35, 30, "frames from both resolutions")
        stored = frames(redis_client, "gate")
        assert {(m.width, m.height) for m in stored} == {(360, 240)}
        assert all(len(m.gray) == 360 * 240 for m in stored)
        assert [m.seq for m in stored] == list(range(len(stored)))
        assert len({m.session for m in stored[:35]}) == 1, "the switch must not look like a reconnect"

        def snapshot_shape() -> tuple[int, int]:
            jpeg = redis_client.get(keys.snapshot_key("gate"))
            return cv2.imdecode(np.frombuffer(jpeg, np.uint8), 1).shape[:2]

        # Display images are stored once per display interval: the first after the switch may come later.
        wait_for(lambda: snapshot_shape() == (270, 480), 10, "the display to follow the new aspect (480x270)")
    finally:
        server.stop()


def test_4k_footage_is_stored_at_the_analysis_size(
    run_ingest: RunIngest, redis_client: redis.Redis, tmp_path: Path
) -> None:
    clip = write_demo_clip(tmp_path / "uhd.mp4", seconds=1.5, fps=4, size=(3840, 2160))
    process = psutil.Process()
    baseline = process.memory_info().rss
    peak = [baseline]
    put_camera(redis_client, schemas.CameraConfig(id="uhd", source=str(clip)))
    run_ingest()

    def finished_while_sampling_memory() -> schemas.CameraStatus | None:
        peak.append(process.memory_info().rss)
        return state_is(redis_client, "uhd", "finished", "error")()

    done = wait_for(finished_while_sampling_memory, 60, "the 4K clip")
    # a few decoded 4K frames (12 MB each) in flight at most, not the clip
    assert max(peak) - baseline < 300 * 2**20, f"{(max(peak) - baseline) / 2**20:.0f} MB more while decoding"
    assert done.state == "finished" and done.frames == 6
    stored = frames(redis_client, "uhd")
    assert {(m.width, m.height, len(m.gray)) for m in stored} == {(360, 240, 360 * 240)}
    jpeg = redis_client.get(keys.snapshot_key("uhd"))
    assert len(jpeg) < 200_000
    assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), 1).shape == (270, 480, 3)


def write_audio_only(path: Path) -> Path:
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = np.zeros((1, 16000), dtype=np.float32)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = 16000
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def test_files_that_are_not_video_fail_alone_with_a_reason(
    run_ingest: RunIngest, redis_client: redis.Redis, video_clip: Path, tmp_path: Path
) -> None:
    noise = tmp_path / "noise.mkv"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    truncated = tmp_path / "head.mp4"
    truncated.write_bytes(video_clip.read_bytes()[:2000])  # a header, then nothing
    bad = {
        "audio": (write_audio_only(tmp_path / "voice.mp4"), "no video stream"),
        "noise": (noise, "noise.mkv"),
        "truncated": (truncated, "head.mp4"),
    }
    for camera, (path, _) in bad.items():
        put_camera(redis_client, schemas.CameraConfig(id=camera, source=str(path)))
    put_camera(redis_client, schemas.CameraConfig(id="good", source=str(video_clip)))
    worker = run_ingest()
    for camera, (_, reason) in bad.items():
        failed = wait_for(state_is(redis_client, camera, "error"), 15, f"{camera} to fail")
        assert reason in failed.message, (camera, failed.message)
    assert wait_for(state_is(redis_client, "good", "finished"), 20, "the good camera").frames == 40
    assert not worker.stop_event.is_set()


# ---------------------------------------------------------------- frames scored or counted as dropped
@pytest.fixture
def restartable_redis(tmp_path: Path) -> Iterator[Callable[[], EmbeddedRedis]]:
    """An embedded Redis with AOF in tmp_path; calling the fixture restarts it on the same port."""
    servers = [EmbeddedRedis(tmp_path / "redis").start()]

    def restart() -> EmbeddedRedis:
        servers[-1].stop()
        time.sleep(1.5)  # an outage long enough for frames to be in flight and lost
        servers.append(EmbeddedRedis(tmp_path / "redis", port=servers[-1].port).start())
        return servers[-1]

    restart.first = servers[0]  # type: ignore[attr-defined]
    yield restart
    servers[-1].stop()


def run_on_thread(worker: IngestWorker | InferenceWorker | RetrainWorker) -> threading.Thread:
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    return thread


def dropped_by_inference(client: redis.Redis, camera: str) -> int:
    return int(client.hget(keys.scorer_state_key(camera), DROPPED_FIELD) or 0)


def test_frames_during_a_redis_restart_are_scored_or_counted(
    restartable_redis: Callable[[], EmbeddedRedis], video_clip: Path
) -> None:
    server: EmbeddedRedis = restartable_redis.first  # type: ignore[attr-defined]
    client = connect(server.url)
    put_camera(client, schemas.CameraConfig(id="door", source=str(video_clip), loop=True))
    settings = ingest_settings(server.url)
    settings.inference.lease_ttl_ms = 600
    ingest = IngestWorker(settings, server.url, realtime=True)
    inference = InferenceWorker(settings, server.url, worker_id="w1", detector=MotionBaseline(240, 360))
    threads = [run_on_thread(ingest), run_on_thread(inference)]
    try:
        wait_for(lambda: len(scored_seqs(client, "door")) >= 10, 15, "first scores")
        restartable_redis()
        wait_for(lambda: status(client, "door").dropped > 0, 10, "the dropped frames in the camera status")
        written = len(frames(client, "door"))
        wait_for(lambda: len(frames(client, "door")) >= written + 10, 10, "frames after the restart")
        ingest.stop()
        threads[0].join(15)
        total = frames(client, "door")[-1].seq + 1

        def accounted() -> bool:
            return len(scored_seqs(client, "door")) + dropped_by_inference(client, "door") >= total

        wait_for(accounted, 15, "every frame scored or counted")
        seqs = scored_seqs(client, "door")
        assert len(seqs) == len(set(seqs)), "a frame was scored twice"
        assert len(seqs) + dropped_by_inference(client, "door") == total
        assert set(seqs) <= set(range(total))
        decoded = status(client, "door")
        assert decoded.dropped > 0 and decoded.frames == total, "ingest counts what it could not store"
    finally:
        ingest.stop()
        inference.stop()
        for thread in threads:
            thread.join(15)


def heartbeat_info(client: redis.Redis, worker_id: str) -> dict[str, object]:
    raw = client.hget(keys.WORKERS, worker_id)
    return schemas.WorkerHeartbeat.model_validate_json(raw).info if raw else {}


def test_frames_trimmed_before_scoring_are_counted(
    redis_client: redis.Redis, start_inference: Callable[[str], InferenceWorker]
) -> None:
    add_camera(redis_client, "cam1")
    write_frames(redis_client, "cam1", anomalous=range(0), count=20)
    first = start_inference("w1")
    wait_for(lambda: len(scored_seqs(redis_client, "cam1")) == 20, 15, "the first frames")
    first.stop()
    wait_for(lambda: not redis_client.exists(keys.lease_key("cam1")), 10, "the lease to go")
    # While no worker runs, 60 more frames arrive and the stream cap keeps only the last 20.
    rng = np.random.default_rng(1)
    for seq in range(20, 80):
        gray = np.clip(90 + rng.normal(0, 2, (HEIGHT, WIDTH)), 0, 255).astype(np.uint8)
        message = frame_message("cam1", seq, gray)
        redis_client.xadd(keys.frames_stream("cam1"), message.to_fields(), maxlen=20, approximate=False)
    start_inference("w2")
    wait_for(lambda: scored_seqs(redis_client, "cam1")[-1] == 79, 15, "the newest frame scored")
    scored = scored_seqs(redis_client, "cam1")
    assert scored == [*range(20), *range(60, 80)]
    assert dropped_by_inference(redis_client, "cam1") == 40
    wait_for(lambda: heartbeat_info(redis_client, "w2").get("frames_dropped") == 40, 5, "the heartbeat count")
    assert heartbeat_info(redis_client, "w2")["dropped_by_camera"] == {"cam1": 40}


def test_a_lost_consumer_group_is_set_up_again(
    redis_client: redis.Redis, start_inference: Callable[[str], InferenceWorker]
) -> None:
    add_camera(redis_client, "cam1")
    write_frames(redis_client, "cam1", anomalous=range(0), count=10)
    worker = start_inference("w1")
    wait_for(lambda: len(scored_seqs(redis_client, "cam1")) == 10, 15, "the first frames")
    # As after a restart of a Redis without persistence: the frame stream and its group are gone.
    redis_client.delete(keys.frames_stream("cam1"))
    for seq in range(10, 30):
        message = schemas.FrameMessage(
            camera="cam1", seq=seq, ts=1000.0 + seq / 10, session=1, width=WIDTH, height=HEIGHT,
            gray=bytes(WIDTH * HEIGHT),
        )  # fmt: skip
        redis_client.xadd(keys.frames_stream("cam1"), message.to_fields())
    wait_for(lambda: len(scored_seqs(redis_client, "cam1")) == 30, 15, "frames after the loss")
    assert scored_seqs(redis_client, "cam1") == list(range(30))
    assert not worker.stop_event.is_set()


def test_heartbeats_of_killed_workers_are_removed(redis_client: redis.Redis, redis_url: str) -> None:
    def beat(worker_id: str, age_s: float) -> None:
        heartbeat = schemas.WorkerHeartbeat(
            id=worker_id, role="ingest", pid=1, host="h", started_ts=0.0, ts=time.time() - age_s
        )
        redis_client.hset(keys.WORKERS, worker_id, heartbeat.model_dump_json())

    beat("killed-long-ago", STALE_HEARTBEAT_S + 60)
    beat("just-quiet", 5)
    redis_client.hset(keys.WORKERS, "garbled", b"{not json")
    worker = RetrainWorker(Settings(heartbeat_s=0.2), redis_url, worker_id="live")
    thread = run_on_thread(worker)
    try:
        wait_for(
            lambda: not redis_client.hexists(keys.WORKERS, "killed-long-ago"), 5, "the stale entry removed"
        )
        assert set(redis_client.hkeys(keys.WORKERS)) == {b"just-quiet", b"live"}
    finally:
        worker.stop()
        thread.join(10)


# ---------------------------------------------------------------- weights that are not a model
def bad_weights(folder: Path) -> dict[str, Path]:
    garbage = folder / "garbage.onnx"
    garbage.write_bytes(b"\x00not a model" * 100)
    detector = tiny_detector()
    wrong_shape = folder / "shape.pt"
    metadata = detector.info.metadata
    save_detector(
        detector.model, {**metadata, "detector": {**metadata["detector"], "bank_size": 8}}, wrong_shape
    )
    with torch.no_grad():
        detector.model.appearance.memory.fill_(float("nan"))
    nan = folder / "nan.onnx"
    save_detector(detector.model, metadata, nan)
    return {"garbage": garbage, "wrong_shape": wrong_shape, "nan": nan, "missing": folder / "none.pt"}


def test_invalid_weights_for_infer_exit_2_with_a_message(redis_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")} | {"VIGIL_REDIS_URL": redis_url}
    expected = {
        "garbage": "not a loadable ONNX model",
        "wrong_shape": "do not fit",
        "nan": "NaN",
        "missing": "no such",
    }
    for name, path in bad_weights(tmp_path).items():
        result = subprocess.run(
            [sys.executable, "-m", "service.cli", "infer", "--model", str(path)],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2, (name, result.stderr[-2000:])
        assert f"vigil infer: cannot serve the model: {path}" in result.stderr, name
        assert expected[name] in result.stderr, (name, result.stderr[-2000:])
        assert "Traceback" not in result.stderr, name
