"""Ingest from a real RTSP server on loopback (GStreamer): streaming, a server that dies and comes back,
a wrong path and a server that never answers. Skipped with the reason when GStreamer is missing."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
import redis

from tests.waiting import wait_for
from tests.workers.conftest import RtspServer, RunIngest
from tests.workers.ingest.test_worker import frames, state_is, status
from workers.bus import keys, schemas
from workers.ingest.demo import write_demo_clip
from workers.ingest.sources import AvFrame
from workers.store.cameras import put_camera

pytestmark = [pytest.mark.rtsp, pytest.mark.timeout(90)]


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP port that accepts connections (in the kernel backlog) and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"rtsp://127.0.0.1:{listener.getsockname()[1]}/cam"


def test_stream_survives_a_server_restart(
    run_ingest: RunIngest, redis_client: redis.Redis, rtsp_server: RtspServer
) -> None:
    put_camera(redis_client, schemas.CameraConfig(id="gate", source=rtsp_server.url()))
    run_ingest()
    streaming = wait_for(
        lambda: (current := status(redis_client, "gate")) and current.frames >= 25 and current, 20, "frames"
    )
    assert streaming.state == "streaming" and 8 < streaming.fps < 12, streaming

    rtsp_server.stop()
    lost = wait_for(state_is(redis_client, "gate", "reconnecting"), 10, "the camera to notice")
    assert "rtsp://127.0.0.1" in lost.message
    before = frames(redis_client, "gate")
    time.sleep(2)  # a few failed reconnects while the server is away

    rtsp_server.start()
    back = time.monotonic()
    wait_for(lambda: redis_client.xlen(keys.frames_stream("gate")) > len(before), 5, "frames within 5 s")
    assert time.monotonic() - back < 5
    after = frames(redis_client, "gate")
    assert [m.seq for m in after] == list(range(len(after)))
    assert after[len(before)].session == before[-1].session + 1
    resumed = wait_for(state_is(redis_client, "gate", "streaming"), 5, "streaming again")
    assert resumed.reconnects >= 1


def test_a_camera_announcing_a_duration_reconnects_after_its_server_dies(
    run_ingest: RunIngest,
    redis_client: redis.Redis,
    gstreamer_rtsp: None,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = RtspServer(file=write_demo_clip(tmp_path / "footage.mp4", seconds=20, fps=10)).start()
    try:
        with av.open(server.url(), options={"rtsp_transport": "tcp"}) as probe:
            assert probe.duration is not None  # what made it look like a file
        put_camera(redis_client, schemas.CameraConfig(id="yard", source=server.url()))
        run_ingest()
        wait_for(lambda: (current := status(redis_client, "yard")) and current.frames >= 20, 20, "frames")
        with caplog.at_level(logging.WARNING, logger="workers.ingest.worker"):
            server.stop()
            lost = wait_for(state_is(redis_client, "yard", "reconnecting"), 10, "the camera to notice")
        assert any(
            "camera_reconnecting" in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING
        )
        assert "stream ended" in lost.message or "rtsp://127.0.0.1" in lost.message
        before = redis_client.xlen(keys.frames_stream("yard"))
        server.start()
        back = time.monotonic()
        wait_for(lambda: redis_client.xlen(keys.frames_stream("yard")) > before, 5, "frames within 5 s")
        assert time.monotonic() - back < 5
        assert wait_for(state_is(redis_client, "yard", "streaming"), 5, "streaming").reconnects >= 1
    finally:
        server.stop()


def test_footage_served_once_arrives_frame_for_frame(
    run_ingest: RunIngest, redis_client: redis.Redis, gstreamer_rtsp: None, tmp_path: Path
) -> None:
    """What the live benchmark (benchmarks/bench_live.py) relies on: the k-th frame of a camera's stream session
    is the k-th frame of the footage its server plays, none lost at the start or the end and none played twice;
    two files served in turn arrive as two sessions, one after the other."""
    clips = [
        write_demo_clip(tmp_path / "first.mp4", seconds=3, fps=10, seed=1),
        write_demo_clip(tmp_path / "second.mp4", seconds=2, fps=10, seed=2),
    ]
    expected = []
    for session, clip in enumerate(clips):
        with av.open(str(clip)) as container:
            expected += [(session, AvFrame(f).analysis(360, 240)) for f in container.decode(video=0)]
    server = RtspServer(file=clips, once=True).start()
    try:
        put_camera(redis_client, schemas.CameraConfig(id="replay", source=server.url()))
        run_ingest()
        wait_for(lambda: len(frames(redis_client, "replay")) >= len(expected), 30, "every frame")
        ended = wait_for(state_is(redis_client, "replay", "reconnecting", "error"), 10, "the stream's end")
        time.sleep(1.5)  # a reconnect or two: the server has nothing more to play
        assert "404" in status(redis_client, "replay").message, ended
    finally:
        server.stop()
    got = frames(redis_client, "replay")
    assert [(m.seq, m.session) for m in got] == [(k, s) for k, (s, _) in enumerate(expected)]
    assert all(np.array_equal(m.array(), image) for m, (_, image) in zip(got, expected, strict=True))


def test_wrong_path_and_silent_server_fail_alone(
    run_ingest: RunIngest,
    redis_client: redis.Redis,
    rtsp_server: RtspServer,
    silent_server: str,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    put_camera(redis_client, schemas.CameraConfig(id="good", source=rtsp_server.url()))
    put_camera(redis_client, schemas.CameraConfig(id="typo", source=rtsp_server.url("/nope", "admin:s3cret")))
    put_camera(redis_client, schemas.CameraConfig(id="silent", source=silent_server))
    run_ingest(open_timeout_s=1.5)

    typo = wait_for(state_is(redis_client, "typo", "error"), 15, "the wrong path to fail")
    assert typo.message.startswith(f"cannot open rtsp://***@127.0.0.1:{rtsp_server.port}/nope: ")
    assert "404" in typo.message
    silent = wait_for(state_is(redis_client, "silent", "error"), 15, "the silent server to time out")
    assert silent.message.startswith(f"cannot open {silent_server}: no answer within 1.5 s")
    wait_for(lambda: redis_client.xlen(keys.frames_stream("good")) >= 20, 20, "the good camera's frames")
    assert status(redis_client, "good").state == "streaming"

    time.sleep(2)  # retries go on with backoff
    assert status(redis_client, "typo").reconnects >= 1
    output = capfd.readouterr()
    for text in (caplog.text, output.out, output.err, typo.message, status(redis_client, "typo").message):
        assert "s3cret" not in text and "admin" not in text
