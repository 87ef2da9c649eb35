"""Ingest from real files and frame folders into a real Redis: sampling, storage, status, run-time
camera changes, bad inputs, restarts and the process base (heartbeat, SIGTERM)."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis

from tests.waiting import wait_for
from tests.workers.conftest import RunIngest, corrupt_copy, gray_frame, ingest_settings
from workers.bus import keys, schemas
from workers.bus.connection import EmbeddedRedis, connect
from workers.ingest.demo import demo_source, write_demo_clip
from workers.ingest.sources import camera_id_from_source, open_source
from workers.ingest.worker import IngestWorker
from workers.proc.process import Backoff
from workers.proc.redaction import redact
from workers.store.cameras import ensure_sources, new_camera_id, put_camera, remove_camera

pytestmark = pytest.mark.timeout(60)
PROJECT_ROOT = Path(__file__).resolve().parents[3]


def status(client: redis.Redis, camera: str) -> schemas.CameraStatus | None:
    raw = client.hget(keys.CAMERA_STATUS, camera)
    return None if raw is None else schemas.CameraStatus.model_validate_json(raw)


def state_is(client: redis.Redis, camera: str, *states: str) -> Callable[[], schemas.CameraStatus | None]:
    def check() -> schemas.CameraStatus | None:
        current = status(client, camera)
        return current if current is not None and current.state in states else None

    return check


def frames(client: redis.Redis, camera: str) -> list[schemas.FrameMessage]:
    return [
        schemas.FrameMessage.from_fields(fields) for _, fields in client.xrange(keys.frames_stream(camera))
    ]


# ---------------------------------------------------------------- pure parts
def test_redact_and_camera_ids(tmp_path: Path) -> None:
    assert redact("cannot open rtsp://admin:s3cret@10.0.0.5:554/live: refused") == (
        "cannot open rtsp://***@10.0.0.5:554/live: refused"
    )
    clip = tmp_path / "Front Door (1).mp4"
    clip.write_bytes(b"x")
    assert camera_id_from_source(str(clip)) == "Front-Door-1"
    assert camera_id_from_source("rtsp://u:p@cam.local/stream1?x=1") == "stream1"
    assert new_camera_id(str(clip), {"Front-Door-1"}) == "cam1"
    assert new_camera_id("rtsp://cam.local/live", {"live", "cam1"}) == "cam2"


def test_backoff_grows_to_its_cap_and_resets() -> None:
    backoff = Backoff(max_s=2.0, initial_s=0.5)
    assert [backoff.next_delay() for _ in range(5)] == [0.5, 1.0, 2.0, 2.0, 2.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_demo_clip_is_h264_with_a_bright_crossing(tmp_path: Path) -> None:
    clip = write_demo_clip(tmp_path / "demo.mp4", seconds=6, fps=10)
    source = open_source(str(clip), folder_fps=10)
    decoded = [frame.analysis(192, 128) for frame in source.frames()]
    source.close()
    assert len(decoded) == 60
    brightest = [int(np.percentile(frame, 99.5)) for frame in decoded]
    assert max(brightest[:20]) < 200 and max(brightest[25:40]) > 230  # the square appears after 40%


def test_demo_source_is_a_shared_video_else_a_clip_made_in_the_data_dir(tmp_path: Path) -> None:
    assert Path(demo_source(PROJECT_ROOT, tmp_path / "data")).exists()
    lone_root = tmp_path / "checkout" / "vigil"  # no ../shared beside it
    clip = Path(demo_source(lone_root, tmp_path / "data"))
    assert clip == tmp_path / "data" / "demo" / "demo.mp4" and clip.stat().st_size > 0


# ---------------------------------------------------------------- files and folders
def test_video_file_is_sampled_resized_and_finished(
    run_ingest: RunIngest, redis_client: redis.Redis, video_clip: Path
) -> None:
    put_camera(redis_client, schemas.CameraConfig(id="door", source=str(video_clip), fps=5))
    run_ingest()
    final = wait_for(state_is(redis_client, "door", "finished"), 20, "the end of the file")
    stored = frames(redis_client, "door")
    assert len(stored) == final.frames == 20  # 4 s at 5 fps out of a 10 fps file
    assert [m.seq for m in stored] == list(range(20)) and {m.session for m in stored} == {0}
    assert (stored[0].width, stored[0].height) == (360, 240) and len(stored[0].gray) == 360 * 240
    assert final.source_size == (240, 360)  # what a fit to this camera's frames sizes its flow by
    snapshot = cv2.imdecode(
        np.frombuffer(redis_client.get(keys.snapshot_key("door")), np.uint8), cv2.IMREAD_COLOR
    )
    assert snapshot.shape[1] == 480 and snapshot.shape[0] == 320
    display = redis_client.xrange(keys.display_stream("door"))
    assert display and schemas.DisplayMessage.from_fields(display[0][1]).jpeg[:2] == b"\xff\xd8"


def test_files_play_in_real_time(run_ingest: RunIngest, redis_client: redis.Redis, video_clip: Path) -> None:
    put_camera(redis_client, schemas.CameraConfig(id="door", source=str(video_clip), fps=10))
    started = time.monotonic()
    run_ingest(realtime=True)
    wait_for(state_is(redis_client, "door", "finished"), 20, "the end of the file")
    elapsed = time.monotonic() - started
    stored = frames(redis_client, "door")
    assert len(stored) == 40 and elapsed > 3.5, f"{len(stored)} frames in {elapsed:.1f} s"
    assert 0.07 < np.median(np.diff([m.ts for m in stored])) < 0.13


def test_frame_folder_uses_camera_fps_and_size(
    run_ingest: RunIngest, redis_client: redis.Redis, frame_folder: Path
) -> None:
    put_camera(
        redis_client, schemas.CameraConfig(id="ped", source=str(frame_folder), fps=10, width=64, height=48)
    )
    run_ingest()
    final = wait_for(state_is(redis_client, "ped", "finished"), 20, "the end of the folder")
    assert final.source_size == (120, 160)
    stored = redis_client.xrange(keys.frames_stream("ped"))
    assert len(stored) == 12
    first = gray_frame(stored[0][1])
    expected = cv2.resize(
        cv2.imread(str(frame_folder / "000.png"), cv2.IMREAD_GRAYSCALE),
        (64, 48),
        interpolation=cv2.INTER_AREA,
    )
    assert first.shape == (48, 64) and np.abs(first.astype(int) - expected).max() <= 1


def test_bad_inputs_fail_alone(
    run_ingest: RunIngest, redis_client: redis.Redis, video_clip: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "empty.mp4"
    empty.touch()
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 100)
    empty_folder = tmp_path / "no-frames"
    empty_folder.mkdir()
    bad = {
        "empty": (str(empty), "empty file"),
        "corrupt": (str(corrupt_copy(video_clip, tmp_path / "half.mp4")), "half.mp4"),
        "text": (str(text), "notes.mp4"),
        "missing": (str(tmp_path / "nowhere.mp4"), "no such file"),
        "folder": (str(empty_folder), "no frame images"),
    }
    for camera, (source, _) in bad.items():
        put_camera(redis_client, schemas.CameraConfig(id=camera, source=source))
    put_camera(redis_client, schemas.CameraConfig(id="good", source=str(video_clip)))
    worker = run_ingest()
    for camera, (_, reason) in bad.items():
        failed = wait_for(state_is(redis_client, camera, "error", "finished"), 10, f"{camera} to fail")
        assert failed.state == "error" and reason in failed.message, (camera, failed.message)
    assert wait_for(state_is(redis_client, "good", "finished"), 20, "the good camera").frames == 40
    assert not worker.stop_event.is_set()

    def heartbeat() -> schemas.WorkerHeartbeat:
        return schemas.WorkerHeartbeat.model_validate_json(redis_client.hget(keys.WORKERS, worker.worker_id))

    wait_for(lambda: heartbeat().info["cameras"] == 6, 5, "a heartbeat counting the cameras")
    assert heartbeat().role == "ingest"


def test_cameras_follow_the_registry_at_run_time(
    run_ingest: RunIngest, redis_client: redis.Redis, video_clip: Path
) -> None:
    run_ingest(realtime=True)
    put_camera(redis_client, schemas.CameraConfig(id="lobby", source=str(video_clip), loop=True))
    wait_for(state_is(redis_client, "lobby", "streaming"), 10, "the new camera")
    wait_for(lambda: redis_client.xlen(keys.frames_stream("lobby")) >= 5, 10, "frames")

    put_camera(
        redis_client, schemas.CameraConfig(id="lobby", source=str(video_clip), loop=True, enabled=False)
    )
    stopped = wait_for(state_is(redis_client, "lobby", "stopped"), 10, "the disabled camera")
    assert stopped.message == "camera disabled"
    count = redis_client.xlen(keys.frames_stream("lobby"))
    time.sleep(0.5)
    assert redis_client.xlen(keys.frames_stream("lobby")) == count

    # enabled again with another fps: a new session, seq continues
    put_camera(redis_client, schemas.CameraConfig(id="lobby", source=str(video_clip), loop=True, fps=5))
    wait_for(
        lambda: redis_client.xlen(keys.frames_stream("lobby")) >= count + 3, 10, "frames after re-enabling"
    )
    stored = frames(redis_client, "lobby")
    assert [m.seq for m in stored] == list(range(len(stored)))
    assert stored[count].session == stored[count - 1].session + 1

    remove_camera(redis_client, "lobby")
    wait_for(lambda: status(redis_client, "lobby") is None, 5, "the status to go")
    time.sleep(1.5)
    assert status(redis_client, "lobby") is None, "a removed camera's thread wrote a status"


def test_looping_file_starts_new_sessions(
    run_ingest: RunIngest, redis_client: redis.Redis, video_clip: Path
) -> None:
    put_camera(redis_client, schemas.CameraConfig(id="loop", source=str(video_clip), loop=True))
    run_ingest()
    wait_for(lambda: redis_client.xlen(keys.frames_stream("loop")) >= 100, 20, "two passes")
    stored = frames(redis_client, "loop")
    assert stored[39].session == 0 and stored[40].session == 1 and stored[80].session == 2
    assert status(redis_client, "loop").state == "streaming"


def test_seq_and_session_continue_after_a_worker_restart(
    run_ingest: RunIngest, redis_client: redis.Redis, video_clip: Path
) -> None:
    put_camera(redis_client, schemas.CameraConfig(id="door", source=str(video_clip)))
    first = run_ingest()
    wait_for(state_is(redis_client, "door", "finished"), 20, "the first pass")
    first.stop()
    wait_for(lambda: redis_client.hget(keys.WORKERS, first.worker_id) is None, 10, "the heartbeat to go")
    redis_client.hdel(keys.CAMERA_STATUS, "door")
    run_ingest()
    wait_for(state_is(redis_client, "door", "finished"), 20, "the second pass")
    stored = frames(redis_client, "door")
    assert [m.seq for m in stored] == list(range(80))
    assert stored[40].session == stored[39].session + 1


def test_frame_stream_is_capped_by_buffer_seconds(
    run_ingest: RunIngest, redis_client: redis.Redis, video_clip: Path
) -> None:
    put_camera(redis_client, schemas.CameraConfig(id="loop", source=str(video_clip), loop=True))
    run_ingest(buffer_seconds=3)  # 30 frames at 10 fps
    wait_for(
        lambda: (
            int(json.loads(redis_client.hget(keys.CAMERA_STATUS, "loop") or b"{}").get("frames", 0)) >= 400
        ),
        30,
        "frames",
    )
    assert redis_client.xlen(keys.frames_stream("loop")) < 30 + 200  # MAXLEN ~ trims whole nodes


def test_ensure_sources_adds_each_source_once(
    redis_client: redis.Redis, video_clip: Path, frame_folder: Path
) -> None:
    added = ensure_sources(redis_client, [str(video_clip), str(frame_folder)], fps=5)
    assert [c.id for c in added] == ["walkway", "01"] and added[0].fps == 5
    again = ensure_sources(redis_client, [str(video_clip), "rtsp://u:p@cam/x"])
    assert [c.id for c in again] == ["walkway", "x"]
    assert redis_client.hlen(keys.CAMERAS) == 3


# ---------------------------------------------------------------- the process
def test_sigterm_stops_the_worker_cleanly(
    redis_url: str, redis_client: redis.Redis, video_clip: Path
) -> None:
    put_camera(redis_client, schemas.CameraConfig(id="door", source=str(video_clip), loop=True))
    script = (
        "import sys; from workers.ingest.worker import IngestWorker; from workers.config import Settings;"
        "sys.exit(IngestWorker(Settings(redis_url=sys.argv[1], heartbeat_s=0.2), sys.argv[1]).run())"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    process = subprocess.Popen([sys.executable, "-c", script, redis_url], cwd=PROJECT_ROOT, env=env)
    try:
        wait_for(state_is(redis_client, "door", "streaming"), 20, "streaming")
        assert redis_client.hlen(keys.WORKERS) == 1
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert status(redis_client, "door").state == "stopped"
    assert redis_client.hlen(keys.WORKERS) == 0


def test_streaming_resumes_after_a_redis_restart(tmp_path: Path, video_clip: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis").start()
    client = connect(server.url)
    worker = IngestWorker(ingest_settings(server.url), server.url, realtime=True)
    thread = threading.Thread(target=worker.run, daemon=True)
    try:
        put_camera(client, schemas.CameraConfig(id="door", source=str(video_clip), loop=True))
        thread.start()
        wait_for(lambda: client.xlen(keys.frames_stream("door")) >= 10, 10, "frames")
        server.stop()
        time.sleep(1.5)
        server = EmbeddedRedis(tmp_path / "redis", port=server.port).start()  # same port, same AOF
        back = time.monotonic()
        before = client.xlen(keys.frames_stream("door"))
        wait_for(lambda: client.xlen(keys.frames_stream("door")) >= before + 5, 5, "frames after the restart")
        assert time.monotonic() - back < 5
        stored = frames(client, "door")
        assert [m.seq for m in stored] == list(range(len(stored)))
        assert stored[-1].session > stored[0].session, "the outage restarts the frame history"
        wait_for(state_is(client, "door", "streaming"), 5, "the status after the restart")
    finally:
        worker.stop()
        thread.join(15)
        client.close()
        server.stop()
    assert not thread.is_alive()


@pytest.fixture
def http_server(video_clip: Path) -> Iterator[str]:
    """The clips folder over HTTP on loopback."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(video_clip.parent))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_recording_plays_like_a_file_and_a_missing_url_retries(
    run_ingest: RunIngest, redis_client: redis.Redis, http_server: str, video_clip: Path
) -> None:
    url = f"{http_server}/{video_clip.name}"
    put_camera(redis_client, schemas.CameraConfig(id="web", source=url, recording=True))
    put_camera(redis_client, schemas.CameraConfig(id="gone", source=f"{http_server}/gone.mp4"))
    run_ingest()
    assert wait_for(state_is(redis_client, "web", "finished"), 20, "the HTTP video").frames == 40
    gone = wait_for(state_is(redis_client, "gone", "error"), 10, "the missing URL")
    assert gone.message.startswith(f"cannot open {http_server}/gone.mp4: ") and "retrying" in gone.message
