"""Fixtures for the worker tests: real video files and frame folders, an ingest worker on a thread, and a
real RTSP server on loopback (GStreamer through the system Python; the rtsp tests skip without it)."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
import pytest

from models.detector.motion import MotionBaseline
from tests.rtsp_process import RTSP_PACKAGES, SYSTEM_PYTHON, start_rtsp_server
from workers.bus import schemas
from workers.bus.connection import free_port
from workers.config import AnalysisSettings, Settings
from workers.inference.worker import InferenceWorker
from workers.ingest.demo import demo_frames, write_demo_clip
from workers.ingest.worker import IngestWorker
from workers.proc.process import WorkerProcess

_GST_PROBE = (
    "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0');"
    "from gi.repository import Gst, GstRtspServer; Gst.init(None);"
    "missing = [e for e in ('videotestsrc', 'openh264enc', 'h264parse', 'rtph264pay', 'qtdemux')"
    " if Gst.ElementFactory.find(e) is None]; print(' '.join(missing))"
)


@pytest.fixture(scope="session")
def video_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4 s, 10 fps, 360x240 H.264 MP4 of the demo scene."""
    return write_demo_clip(tmp_path_factory.mktemp("clips") / "walkway.mp4", seconds=4, fps=10)


@pytest.fixture(scope="session")
def frame_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset-style folder of 12 numbered PNG frames (160x120)."""
    folder = tmp_path_factory.mktemp("frames") / "01"
    folder.mkdir()
    for index, gray in enumerate(demo_frames(seconds=1.2, fps=10, size=(160, 120))):
        cv2.imwrite(str(folder / f"{index:03d}.png"), gray)
    return folder


def ingest_settings(redis_url: str, **analysis: float) -> Settings:
    """Settings for fast tests: short backoffs and heartbeats, small buffers."""
    values: dict[str, float] = {"fps": 10, "display_interval_s": 0.5, "buffer_seconds": 120} | analysis
    return Settings(
        redis_url=redis_url,
        reconnect_max_s=1.0,
        heartbeat_s=0.2,
        analysis=AnalysisSettings(**values),  # type: ignore[arg-type]
    )


RunIngest = Callable[..., IngestWorker]


Worker = TypeVar("Worker", bound=WorkerProcess)


@pytest.fixture
def run_worker() -> Iterator[Callable[[Worker], Worker]]:
    """Runs workers in threads; stops and joins them when the test ends."""
    running: list[tuple[WorkerProcess, threading.Thread]] = []

    def start(worker: Worker) -> Worker:
        thread = threading.Thread(target=worker.run, name=worker.worker_id, daemon=True)
        thread.start()
        running.append((worker, thread))
        return worker

    yield start
    for worker, thread in running:
        worker.stop()
        thread.join(15)
        assert not thread.is_alive(), f"the {worker.role} worker did not stop"


@pytest.fixture
def run_ingest(redis_url: str, run_worker: Callable[[IngestWorker], IngestWorker]) -> RunIngest:
    """Start IngestWorkers on threads (realtime off unless asked); all are stopped at the end of the test."""

    def start(*, realtime: bool = False, open_timeout_s: float = 2.0, **analysis: float) -> IngestWorker:
        settings = ingest_settings(redis_url, **analysis)
        return run_worker(IngestWorker(settings, redis_url, realtime=realtime, open_timeout_s=open_timeout_s))

    return start


@pytest.fixture(scope="session")
def gstreamer_rtsp() -> None:
    """Skip unless the system Python can run tests/rtsp_server.py."""
    if not Path(SYSTEM_PYTHON).exists():
        pytest.skip(f"RTSP tests need {SYSTEM_PYTHON} with GStreamer: apt-get install -y {RTSP_PACKAGES}")
    probe = subprocess.run([SYSTEM_PYTHON, "-c", _GST_PROBE], capture_output=True, text=True, timeout=30)
    missing = probe.stdout.strip()
    if probe.returncode != 0 or missing:
        reason = (
            f"missing elements: {missing}" if missing else (probe.stderr.strip().splitlines() or ["?"])[-1]
        )
        pytest.skip(f"GStreamer RTSP server unavailable ({reason}): apt-get install -y {RTSP_PACKAGES}")


class RtspServer:
    """tests/rtsp_server.py as a child process on a fixed port (loopback unless `address` says otherwise), so
    it can be stopped and restarted."""

    def __init__(
        self,
        mount: str = "/cam",
        file: Path | list[Path] | None = None,
        address: str = "127.0.0.1",
        once: bool = False,
    ) -> None:
        self.port = free_port()
        self.mount = mount
        self.address = address  # the interface it listens on
        # recorded footage, played once per client (the server announces its duration), several files in
        # turn; else live
        self.files = [file] if isinstance(file, Path) else list(file or [])
        self.once = once  # each file to one client only, then 404 Not Found
        self.process: subprocess.Popen[str] | None = None

    def url(self, path: str | None = None, credentials: str = "") -> str:
        auth = f"{credentials}@" if credentials else ""
        return f"rtsp://{auth}127.0.0.1:{self.port}{path or self.mount}"

    def start(self) -> RtspServer:
        self.process = start_rtsp_server(self.port, self.mount, self.files, self.once, self.address)
        return self

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.kill()  # like a camera losing power: no RTSP teardown
        self.process.wait(10)


@pytest.fixture
def rtsp_server(gstreamer_rtsp: None) -> Iterator[RtspServer]:
    server = RtspServer().start()
    yield server
    server.stop()


def corrupt_copy(clip: Path, target: Path) -> Path:
    """The second half of a real MP4: video data without its header and index, not decodable."""
    target.write_bytes(clip.read_bytes()[clip.stat().st_size // 2 :])
    return target


def gray_frame(fields: dict[bytes, bytes]) -> np.ndarray:
    return schemas.FrameMessage.from_fields(fields).array()


@pytest.fixture
def start_inference(redis_url: str) -> Iterator[Callable[..., InferenceWorker]]:
    """Start inference workers (motion baseline, short leases) on threads, on the test's Redis or the one at
    `url` (a cluster); all stopped after the test."""
    from tests.workers.inference.test_worker import HEIGHT, WIDTH, settings_for_test

    started: list[tuple[InferenceWorker, threading.Thread]] = []

    def start(worker_id: str, url: str | None = None) -> InferenceWorker:
        detector = MotionBaseline(HEIGHT, WIDTH)
        worker = InferenceWorker(
            settings_for_test(), url or redis_url, worker_id=worker_id, detector=detector
        )
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        started.append((worker, thread))
        return worker

    yield start
    for worker, thread in started:
        worker.stop()
        thread.join(15)
        assert not thread.is_alive(), "an inference worker did not stop"
