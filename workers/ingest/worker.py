"""The ingest worker: one thread per enabled camera in keys.CAMERAS decodes its source, samples it to the
analysis fps, and writes grayscale analysis frames (keys.frames_stream) and display JPEGs (keys.snapshot_key,
keys.display_stream) to Redis, with the camera's state in keys.CAMERA_STATUS. Every
settings.retention.sweep_interval_s it also runs the site's retention sweep (workers/store/retention.py).

Live sources reconnect with exponential backoff (capped at settings.reconnect_max_s); a live stream that
ends, even without an error, counts as a disconnect. Files and frame folders play at their analysis fps in
real time (like a camera) unless `realtime=False`, then finish, or start again when the camera loops. A
camera that fails only sets its own error state. Frame numbers (seq) continue from the last one in the
stream, across reconnects and worker restarts; `session` increments at every (re)connect.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from contextlib import suppress
from typing import Any

import numpy as np
import redis
from pydantic import ValidationError

from models.scoring.sampling import FpsSampler
from workers.bus import keys, schemas
from workers.config import Settings
from workers.ingest.sources import DecodedFrame, FrameSource, SourceError, is_live, open_source
from workers.proc.process import Backoff, WorkerProcess, format_fields
from workers.proc.redaction import redact
from workers.store import retention
from workers.store.cameras import list_cameras

log = logging.getLogger("vigil.ingest")

STATUS_INTERVAL_S = 1.0
FPS_WINDOW = 20  # frames over which the reported fps is measured
REANCHOR_LAG_S = 1.0  # a paced file this far behind real time restarts its clock instead of bursting


def _ingest_fields(config: schemas.CameraConfig) -> tuple[Any, ...]:
    """What the ingest thread depends on (its stream caps too): other changes (thresholds, zones) do not
    restart the stream."""
    return (config.source, config.fps, config.width, config.height, config.loop, config.retention)


class CameraIngest:
    """Streams one camera into Redis on its own thread until stopped, finished or failed for good."""

    def __init__(
        self,
        config: schemas.CameraConfig,
        settings: Settings,
        client: redis.Redis,
        *,
        realtime: bool = True,
        open_timeout_s: float = 5.0,
    ) -> None:
        self.config = config
        self.settings = settings
        self.client = client
        self.realtime = realtime
        self.open_timeout_s = open_timeout_s
        analysis = settings.analysis
        resolved = analysis.for_camera(config)
        self.fps, self.width, self.height = resolved.fps, resolved.width, resolved.height
        self.description = redact(config.source)
        self.frames_maxlen = resolved.buffer_frames
        self.display_s = settings.retention.for_camera(config).display_s
        self.display_maxlen = max(1, round(self.display_s / analysis.display_interval_s))
        self.stop_event = threading.Event()
        self._status_lock = threading.Lock()
        self.status = schemas.CameraStatus(
            camera=config.id, state="starting", width=self.width, height=self.height
        )
        self._emit_times: deque[float] = deque(maxlen=FPS_WINDOW)
        self._next_status_s = 0.0
        self._next_display_s = 0.0
        self._redis_down = False
        self._last_reconnect_reason = ""
        self.seq = 0  # of the next frame
        self._last_id_ms = 0  # time part of the last frame's stream id: ids rise even if the clock steps back
        self.session = 0  # of the next (re)connect
        self.thread = threading.Thread(target=self._run, name=f"ingest-{config.id}", daemon=True)

    # ------------------------------------------------------------ control
    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Ask the thread to end; it writes no status after this returns."""
        with self._status_lock:
            self.stop_event.set()

    def join(self, timeout_s: float) -> bool:
        self.thread.join(timeout_s)
        return not self.thread.is_alive()

    # ------------------------------------------------------------ status
    def _event(self, name: str, level: int = logging.INFO, **fields: Any) -> None:
        log.log(level, "%s %s", name, format_fields(camera=self.config.id, **fields))

    def _set_status(self, state: schemas.CameraState, message: str, **fields: Any) -> None:
        self.status = self.status.model_copy(update={"state": state, "message": redact(message), **fields})
        self._publish_status()

    def _publish_status(self) -> None:
        with self._status_lock:
            if self.stop_event.is_set():
                return  # the worker writes the final status
            self.status.updated_ts = time.time()
            with suppress(redis.ConnectionError):  # frames report the outage; the next status write retries
                self.client.hset(keys.CAMERA_STATUS, self.config.id, self.status.model_dump_json())
        self._next_status_s = time.monotonic() + STATUS_INTERVAL_S

    # ------------------------------------------------------------ the thread
    def _run(self) -> None:
        try:
            self._resume_numbering()
            self._stream()
        except Exception as exc:  # a bug must not take the other cameras down; say what happened
            log.exception("camera %s: ingest failed", self.config.id)
            self._set_status("error", f"ingest failed: {type(exc).__name__}: {exc}")

    def _resume_numbering(self) -> None:
        """seq continues after the last frame in the stream (worker restart); session after its session."""
        backoff = Backoff(self.settings.reconnect_max_s)
        while not self.stop_event.is_set():
            try:
                last = self.client.xrevrange(keys.frames_stream(self.config.id), count=1)
            except redis.ConnectionError:
                self.stop_event.wait(backoff.next_delay())
                continue
            if last:
                message = schemas.FrameMessage.from_fields(last[0][1])
                self.seq, self.session = message.seq + 1, message.session + 1  # the next ones
                self._last_id_ms = int(last[0][0].split(b"-")[0])
                self.status.frames = self.seq  # the camera's count goes on, as its seq does
            return

    def _stream(self) -> None:
        backoff = Backoff(self.settings.reconnect_max_s)
        connected_before = False
        # later attempts keep the last failure on show ("...; retrying in 2.0 s") until frames flow
        self._set_status("starting", f"opening {self.description}")
        while not self.stop_event.is_set():
            try:
                source = open_source(
                    self.config.source,
                    folder_fps=self.fps,
                    open_timeout_s=self.open_timeout_s,
                    recording=self.config.recording,
                )
            except SourceError as exc:
                if not is_live(self.config.source):  # a missing or broken local file will not come back
                    self._event("camera_error", logging.ERROR, error=str(exc))
                    self._set_status("error", str(exc))
                    return
                self._wait_reconnect(backoff, str(exc), "reconnecting" if connected_before else "error")
                continue
            try:
                produced, error = self._play(source)
            finally:
                source.close()
            if self.stop_event.is_set():
                return
            if produced:
                connected_before = True
                backoff.reset()
            if source.live:
                self._wait_reconnect(backoff, error or f"{self.description}: stream ended", "reconnecting")
            elif error or not produced:
                message = error or f"{self.description}: no decodable video frames"
                self._event("camera_error", logging.ERROR, error=message)
                self._set_status("error", message)
                return
            elif not self.config.loop:
                self._event("camera_finished", frames=self.status.frames)
                self._set_status("finished", f"end of {self.description}", fps=0.0)
                return

    def _wait_reconnect(self, backoff: Backoff, reason: str, state: schemas.CameraState) -> None:
        delay = backoff.next_delay()
        level = logging.INFO if reason == self._last_reconnect_reason else logging.WARNING  # say it loud once
        self._last_reconnect_reason = reason
        self._event("camera_reconnecting", level, reason=redact(reason), retry_in_s=f"{delay:.1f}")
        self._set_status(state, f"{reason}; retrying in {delay:.1f} s", fps=0.0)
        self.stop_event.wait(delay)
        self.status.reconnects += 1

    def _play(self, source: FrameSource) -> tuple[int, str | None]:
        """Stream until the source ends or stop; (frames written, error message or None)."""
        sampler = FpsSampler(self.fps)
        clock_origin: tuple[float, float] | None = None  # (source time, monotonic) of the first kept frame
        produced = 0
        try:
            for frame in source.frames():
                if self.stop_event.is_set():
                    break
                now = time.monotonic()
                source_time = frame.time_s if frame.time_s is not None else now
                if not sampler.keep(source_time):
                    continue
                if self.realtime and not source.live:
                    if clock_origin is None or source_time < clock_origin[0]:
                        clock_origin = (source_time, now)
                    delay = clock_origin[1] + (source_time - clock_origin[0]) - now
                    if delay < -REANCHOR_LAG_S:
                        clock_origin = (source_time, now)
                    elif delay > 0 and self.stop_event.wait(delay):
                        break
                self._write_frame(frame.analysis(self.width, self.height), frame)
                produced += 1
                if produced == 1:
                    self._event(
                        "camera_streaming", source=self.description, session=self.session, seq=self.seq - 1
                    )
                    self._set_status("streaming", f"streaming {self.description}", source_size=frame.size)
        except SourceError as exc:
            return produced, str(exc)
        finally:
            if produced:
                self.session += 1  # whatever comes next starts a new frame history
        return produced, None

    def _execute(self, pipe: redis.client.Pipeline, entry_id: str) -> None:
        """Run the frame's pipeline; the frame's entry being there already (a resent pipeline) is success."""
        try:
            pipe.execute()
        except redis.ResponseError:
            top = self.client.xrevrange(keys.frames_stream(self.config.id), count=1)
            if not top or top[0][0].decode() != entry_id:
                raise
            log.info("camera %s: frame %d was already stored (a resent write)", self.config.id, self.seq)

    def _write_frame(self, gray: np.ndarray, frame: DecodedFrame) -> None:
        camera = self.config.id
        ts = time.time()
        message = schemas.FrameMessage(
            camera=camera,
            seq=self.seq,
            ts=ts,
            session=self.session,
            width=self.width,
            height=self.height,
            gray=gray.tobytes(),
        )
        now = time.monotonic()
        pipe = self.client.pipeline(transaction=False)
        # the id carries the seq: a pipeline the client resends after a timeout cannot store a frame twice
        entry_id = f"{max(int(ts * 1000), self._last_id_ms + 1)}-{self.seq}"
        pipe.xadd(
            keys.frames_stream(camera),
            message.to_fields(),
            id=entry_id,
            maxlen=self.frames_maxlen,
            approximate=True,
        )
        if now >= self._next_display_s:
            jpeg = frame.display_jpeg(self.settings.analysis.display_width)
            display = schemas.DisplayMessage(camera=camera, seq=self.seq, ts=ts, jpeg=jpeg)
            pipe.set(keys.snapshot_key(camera), jpeg, ex=round(self.display_s))
            pipe.xadd(
                keys.display_stream(camera), display.to_fields(), maxlen=self.display_maxlen, approximate=True
            )
            self._next_display_s = now + self.settings.analysis.display_interval_s
        try:
            self._execute(pipe, entry_id)
        except redis.ConnectionError as exc:
            if not self._redis_down:
                self._event("redis_unavailable", logging.WARNING, error=exc, action="dropping frames")
                self.session += 1  # frames are lost: the history restarts after the outage
            self._redis_down = True
            self.status.dropped += 1  # counted, never silent: the status written after the outage shows it
            return
        if self._redis_down:
            self._event("redis_reconnected", dropped=self.status.dropped)
            self._redis_down = False
            self._next_status_s = 0.0  # publish the dropped count now
        self.seq += 1
        self._last_id_ms = int(entry_id.split("-")[0])
        self._emit_times.append(now)
        self.status.frames += 1
        self.status.last_frame_ts = ts
        if now >= self._next_status_s:
            self.status.fps = self._measured_fps()
            self._set_status("streaming", f"streaming {self.description}")

    def _measured_fps(self) -> float:
        if len(self._emit_times) < 2:
            return 0.0
        span = self._emit_times[-1] - self._emit_times[0]
        return round((len(self._emit_times) - 1) / span, 2) if span > 0 else 0.0


class IngestWorker(WorkerProcess):
    """Runs a CameraIngest per enabled camera, following keys.CAMERAS (polled every step)."""

    role = "ingest"
    step_interval_s = 1.0

    def __init__(
        self,
        settings: Settings,
        redis_url: str,
        *,
        realtime: bool = True,
        open_timeout_s: float = 5.0,
        worker_id: str | None = None,
    ) -> None:
        super().__init__(settings, redis_url, worker_id=worker_id)
        self.realtime = realtime
        self.open_timeout_s = open_timeout_s
        self.cameras: dict[str, CameraIngest] = {}
        self.next_sweep = 0.0  # monotonic time of the next retention sweep

    def step(self) -> None:
        configs = {config.id: config for config in list_cameras(self.redis)}
        self._follow(configs)
        if time.monotonic() >= self.next_sweep:
            self.next_sweep = time.monotonic() + self.settings.retention.sweep_interval_s
            self._sweep(list(configs.values()))

    def _sweep(self, configs: list[schemas.CameraConfig]) -> None:
        """Remove what is past its span and measure the storage left (workers/store/retention.py)."""
        started = time.monotonic()
        try:
            result = retention.sweep(self.redis, self.settings, configs, time.time())
        except (redis.ResponseError, ValidationError) as exc:  # logged; the next sweep tries again
            self.event("retention_sweep_failed", logging.WARNING, error=exc)
            return
        level = logging.INFO if result.removed else logging.DEBUG
        self.event(
            "retention_sweep", level, display_trimmed=result.display_trimmed,
            frames_trimmed=result.frames_trimmed, alerts_removed=result.alerts_removed,
            events_trimmed=result.events_trimmed, labels_removed=result.labels_removed,
            seconds=f"{time.monotonic() - started:.3f}",
        )  # fmt: skip

    def _follow(self, configs: dict[str, schemas.CameraConfig]) -> None:
        """Start, restart and stop camera threads to match the registry."""
        wanted = {camera_id: config for camera_id, config in configs.items() if config.enabled}
        stopping, disabled = [], []
        for camera_id, ingest in list(self.cameras.items()):
            config = wanted.get(camera_id)
            if config is None or _ingest_fields(config) != _ingest_fields(ingest.config):
                ingest.stop()
                stopping.append(ingest)
                del self.cameras[camera_id]
                if camera_id not in configs:
                    self.redis.hdel(keys.CAMERA_STATUS, camera_id)
                    self.event("camera_removed", camera=camera_id)
                elif config is None:
                    disabled.append(ingest)
        for camera_id, config in wanted.items():
            if camera_id in self.cameras:
                self.cameras[camera_id].config = config  # fields that need no restart
                continue
            ingest = CameraIngest(
                config, self.settings, self.redis, realtime=self.realtime, open_timeout_s=self.open_timeout_s
            )
            self.cameras[camera_id] = ingest
            self.event("camera_started", camera=camera_id, source=ingest.description, fps=ingest.fps)
            ingest.start()
        self._join(stopping)
        for ingest in disabled:  # once its thread has ended: "stopped" means no frame comes after it
            self._write_stopped(ingest, "camera disabled")
            self.event("camera_disabled", camera=ingest.config.id)

    def _join(self, stopping: list[CameraIngest]) -> None:
        deadline = time.monotonic() + self.open_timeout_s + 1.0
        for ingest in stopping:
            if not ingest.join(max(0.0, deadline - time.monotonic())):
                self.event("camera_thread_stuck", logging.WARNING, camera=ingest.config.id)

    def _write_stopped(self, ingest: CameraIngest, message: str) -> None:
        status = ingest.status.model_copy(update={"state": "stopped", "message": message, "fps": 0.0})
        status.updated_ts = time.time()
        self.redis.hset(keys.CAMERA_STATUS, ingest.config.id, status.model_dump_json())

    def teardown(self) -> None:
        cameras = list(self.cameras.values())
        for ingest in cameras:
            ingest.stop()
        self._join(cameras)
        for ingest in cameras:
            if ingest.status.state in ("finished", "error"):
                continue
            try:
                self._write_stopped(ingest, "ingest worker stopped")
            except redis.ConnectionError:
                break
        self.cameras.clear()

    def heartbeat_info(self) -> dict[str, Any]:
        states: dict[str, int] = {}
        for ingest in list(self.cameras.values()):
            states[ingest.status.state] = states.get(ingest.status.state, 0) + 1
        return {"cameras": len(self.cameras), "states": states}
