"""Vigil as an operator runs it, for the live benchmark (benchmarks/bench_live.py): `vigil up` in its own process
group with a fresh data directory and its embedded Redis, the cameras from a site file; waiting until every
camera's stream ended and its frames are scored; what it served read back through the API (cameras, scores,
alerts) and the data-access layer (alert events, the scorer's dropped-frame count); stopped with SIGINT, every
child process checked gone."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis
import yaml

from benchmarks.live_cameras import CameraFootage, RtspReplays
from workers.bus.connection import EMBEDDED_REDIS_DIR, URL_FILE, connect, free_port
from workers.store.alerts import read_alert_events
from workers.store.frames import camera_readings
from workers.store.model_registry import list_versions

log = logging.getLogger("bench_live")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
POLL_S = 0.5
PROGRESS_S = 15.0
STOP_TIMEOUT_S = 60.0
PAGE = 3000  # scores per API page (its most)
ENDED_STATES = ("reconnecting", "error", "finished", "stopped")


def run_in_work_dir(name: str, keep: Path | None, measure: Callable[[Path], int]) -> int:
    """A live benchmark's main: logging without a line per API poll, `measure` run in `keep` (created) or
    a temporary folder removed after it, and the errors a replay can meet (ReplayError, DatasetError, no
    GStreamer) said plainly, exit status 1."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per poll otherwise
    with tempfile.TemporaryDirectory(prefix=f"vigil-{name}-") as scratch:
        work = keep or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        try:
            return measure(work)
        except (RuntimeError, ValueError) as exc:
            log.error("%s: %s", name, exc)
            return 1


class ReplayError(RuntimeError):
    """The replay could not be measured; the message says what was waited for and what the log said."""


@dataclass
class CameraProgress:
    """One camera's replay as the poll sees it (times: monotonic seconds)."""

    expected: int  # frames its clip holds
    started_s: float | None = None
    ended_s: float | None = None
    scored_s: float | None = None
    status: dict[str, Any] = field(default_factory=dict)


class VigilUp:
    """`vigil up --site SITE --model MODEL` on a fresh data directory; a context manager that stops it."""

    def __init__(
        self, work: Path, model: Path, cameras: dict[str, str], env: dict[str, str], port: int
    ) -> None:
        self.work = work
        self.port = port
        self.log_path = work / "vigil-up.log"
        site = {"cameras": [{"id": camera, "source": url} for camera, url in cameras.items()]}
        self.site_file = work / "site.yml"
        self.site_file.write_text(yaml.safe_dump(site))
        self.command = [sys.executable, "-m", "service.cli", "up", "--site", str(self.site_file)]
        self.command += ["--model", str(model.resolve()), "--host", "127.0.0.1", "--port", str(port)]
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.api = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30.0)
        self._redis: redis.Redis | None = None
        self.stop_report: dict[str, Any] = {}

    def __enter__(self) -> VigilUp:
        with self.log_path.open("wb") as log_file:
            self.process = subprocess.Popen(
                self.command,
                cwd=PROJECT_ROOT,
                env=self.env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: nothing it starts outlives the benchmark
            )
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise ReplayError(f"vigil up exited with {self.process.returncode}:\n{self.log_tail()}")

    @property
    def redis(self) -> redis.Redis:
        """The embedded Redis `vigil up` started (its URL file in the data directory)."""
        if self._redis is None:
            url_file = Path(self.env["VIGIL_DATA_DIR"]) / EMBEDDED_REDIS_DIR / URL_FILE
            self._redis = connect(url_file.read_text().strip())
        return self._redis

    def stop(self) -> None:
        """SIGINT as Ctrl-C sends, then checks that every process it started is gone (killed if not)."""
        if self.process is None or self.stop_report:
            return
        self.api.close()
        if self._redis is not None:
            self._redis.close()
        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        started = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            exit_code: int | None = self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            exit_code = None
        _, alive = psutil.wait_procs(
            children, timeout=max(1.0, STOP_TIMEOUT_S - (time.monotonic() - started))
        )
        left = [f"{p.pid} {' '.join(p.cmdline()[:4])}" for p in alive if p.is_running()]
        if exit_code is None or alive:
            os.killpg(self.process.pid, signal.SIGKILL)  # its own group (start_new_session)
            self.process.wait()
        self.stop_report = {
            "signal": "SIGINT",
            "exit_code": exit_code,
            "stop_s": round(time.monotonic() - started, 1),
            "children": len(children),
            "children_left_after_stop": left,
        }

    # ------------------------------------------------------------------ waiting
    def wait_for_replay(
        self, expected: dict[str, int], fps: float, start_timeout_s: float, drain_timeout_s: float
    ) -> dict[str, CameraProgress]:
        """Polls until every camera's stream ended and all its frames are scored; raises ReplayError with the
        log's tail on a timeout or when vigil up dies."""
        cameras = {camera: CameraProgress(frames) for camera, frames in expected.items()}
        begun = time.monotonic()
        next_progress = begun + PROGRESS_S
        while not all(progress.scored_s is not None for progress in cameras.values()):
            self.check_alive()
            now = time.monotonic()
            self._poll(cameras, now)
            self._check_deadlines(cameras, fps, now - begun, start_timeout_s, drain_timeout_s)
            if now >= next_progress:
                next_progress = now + PROGRESS_S
                log.info("replay %.0f s: %s", now - begun, self._progress_line(cameras))
            time.sleep(POLL_S)
        return cameras

    def _poll(self, cameras: dict[str, CameraProgress], now: float) -> None:
        try:
            listed = self.api.get("/api/cameras").raise_for_status().json()
        except httpx.HTTPError:
            return  # the API is still starting
        readings = camera_readings(self.redis, list(cameras))
        for item in listed:
            progress = cameras.get(item["id"])
            if progress is None or item.get("status") is None:
                continue
            status = progress.status = item["status"]
            if status["frames"] > 0 and progress.started_s is None:
                progress.started_s = now
            # its last frame arrived, or its server has nothing more to play (404) for a stream cut short
            over = status["frames"] >= progress.expected or "404" in status.get("message", "")
            stopped = status["state"] in ENDED_STATES
            if progress.started_s is not None and progress.ended_s is None and stopped and over:
                progress.ended_s = now
            newest = readings[item["id"]].newest_score
            pending = readings[item["id"]].frames_pending
            caught_up = pending == 0 and newest is not None and newest.seq >= status["frames"] - 1
            if progress.ended_s is not None and progress.scored_s is None and caught_up:
                progress.scored_s = now

    def _check_deadlines(
        self,
        cameras: dict[str, CameraProgress],
        fps: float,
        elapsed_s: float,
        start_timeout_s: float,
        drain_timeout_s: float,
    ) -> None:
        waiting = [camera for camera, progress in cameras.items() if progress.started_s is None]
        if waiting and elapsed_s > start_timeout_s:
            raise ReplayError(
                f"no frame from {', '.join(waiting)} within {start_timeout_s:.0f} s of vigil up's start "
                f"(states: {self._progress_line(cameras)}):\n{self.log_tail()}"
            )
        now = time.monotonic()
        for camera, progress in cameras.items():
            if progress.started_s is None:
                continue
            play_s = progress.expected / fps
            if progress.ended_s is None and now - progress.started_s > 1.5 * play_s + 60:
                raise ReplayError(
                    f"{camera}: its {play_s:.0f} s stream did not end in {now - progress.started_s:.0f} s"
                )
            if (
                progress.ended_s is not None
                and progress.scored_s is None
                and now - progress.ended_s > drain_timeout_s
            ):
                raise ReplayError(
                    f"{camera}: its frames were not all scored within {drain_timeout_s:.0f} s of its stream's end "
                    f"({self._progress_line(cameras)}):\n{self.log_tail()}"
                )

    def _progress_line(self, cameras: dict[str, CameraProgress]) -> str:
        parts = []
        readings = camera_readings(self.redis, list(cameras)) if self._redis is not None else {}
        for camera, progress in cameras.items():
            status = progress.status or {"state": "unknown", "frames": 0}
            newest = readings[camera].newest_score if camera in readings else None
            scored = newest.seq + 1 if newest is not None else 0
            parts.append(
                f"{camera} {status['state']} {status['frames']}/{progress.expected} streamed, {scored} scored"
            )
        return "; ".join(parts)

    # ------------------------------------------------------------------ reading back
    def scores(self, camera: str) -> list[dict[str, Any]]:
        """Every score of the camera, oldest first, through GET /api/cameras/{id}/scores."""
        out: list[dict[str, Any]] = []
        after = "0-0"
        while True:
            page = self.api.get(f"/api/cameras/{camera}/scores", params={"after": after, "limit": PAGE})
            items = page.raise_for_status().json()
            if not items:
                return out
            out += items
            after = items[-1]["cursor"]

    def alerts(self, camera: str) -> list[dict[str, Any]]:
        """Every alert of the camera through GET /api/alerts, oldest first."""
        out: list[dict[str, Any]] = []
        params: dict[str, Any] = {"camera": camera, "limit": 500}
        while True:
            page = self.api.get("/api/alerts", params=params).raise_for_status().json()
            out += page["items"]
            if page["next_cursor"] is None:
                return sorted(out, key=lambda alert: alert["start_seq"])
            params["cursor"] = page["next_cursor"]

    def opening_frames(self) -> dict[str, int]:
        """Per alert id, the frame that opened it (paged the operator): the last frame of its `new` event."""
        opened: dict[str, int] = {}
        after = "0-0"
        while events := read_alert_events(self.redis, after, count=1000, block_ms=1):
            for entry_id, event in events:
                after = entry_id
                if event.type == "new":
                    opened.setdefault(event.alert_id, event.parsed_alert().last_seq)
        return opened

    def dropped(self, camera: str) -> int:
        """Frames the inference worker never scored (seq gaps: trimmed by the stream cap before scoring)."""
        return camera_readings(self.redis, [camera])[camera].frames_dropped


@contextmanager
def replayed(
    model: Path,
    footage: list[CameraFootage],
    env: dict[str, str],
    work: Path,
    start_timeout_s: float,
    drain_timeout_s: float,
) -> Iterator[tuple[VigilUp, dict[str, CameraProgress], float]]:
    """The footage replayed over RTSP (a loopback server per camera) to `vigil up` serving `model`, until
    every frame is scored: the running service, each camera's progress and when the replay began
    (time.monotonic()). Both are stopped on leaving."""
    with RtspReplays(footage) as servers:
        urls = {item.camera: servers.url(item.camera) for item in footage}
        with VigilUp(work, model, urls, env, free_port()) as vigil:
            started = time.monotonic()
            expected = {item.camera: item.frames for item in footage}
            progress = vigil.wait_for_replay(expected, footage[0].fps, start_timeout_s, drain_timeout_s)
            yield vigil, progress, started


def served_by_camera(
    vigil: VigilUp, footage: list[CameraFootage], progress: dict[str, CameraProgress]
) -> dict[str, dict[str, Any]]:
    """Per camera what the service served: its scores and alerts, the frames it dropped, its ingest status,
    and the frame that opened each alert (every camera's)."""
    opened = vigil.opening_frames()
    return {
        item.camera: {
            "scores": vigil.scores(item.camera),
            "alerts": vigil.alerts(item.camera),
            "dropped": vigil.dropped(item.camera),
            "status": progress[item.camera].status,
            "opened": opened,
        }
        for item in footage
    }


def published_versions(vigil: VigilUp, started: float) -> list[dict[str, Any]]:
    """The model versions the service recorded, oldest first: each with when it was recorded (seconds after
    `started`, the replay's first frame on the monotonic clock), where it came from, its status and why, what
    its cycle mined, and the cameras it scores without its place map."""
    began = time.time() - (time.monotonic() - started)  # the versions' clock
    return [
        {
            "version": v.version,
            "origin": v.origin,
            "status": v.status,
            "after_s": round(v.created_ts - began, 1),
            "reason": v.reason,
            "mined": v.metrics.get("mined"),
            "place_silenced_cameras": v.place_silenced_cameras,
        }
        for v in sorted(list_versions(vigil.redis), key=lambda v: v.created_ts)
    ]
