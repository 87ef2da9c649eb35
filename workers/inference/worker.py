"""Inference worker: scores buffered frames, batching across cameras, and writes scores, error maps and alerts.

Scale-out and fault model:
- Each camera is owned by one worker at a time through a lease key that the owner renews; workers share
  cameras fairly (ceil(cameras / live workers) each), so one camera's frames are scored in order with its
  own history and normalization state.
- Frames are read through the consumer group `inference` of the camera's frame stream. A new owner first
  claims every pending entry of the camera (XAUTOCLAIM), so frames a killed worker had read are scored.
- Each batch's results (scores, error maps, alert events, alert hysteresis state) and its XACK are written
  in one MULTI/EXEC guarded by WATCH on the leases: either all of it lands or none, so a frame is scored
  exactly once and an alert event is never written twice.
- On a Redis Cluster that is one XREADGROUP and one MULTI/EXEC per camera (its keys share a slot); alert
  events reach the site-wide alert keys through the camera's outbox (inference/alert_writes.py).
- A frame that never reaches a worker (trimmed by the stream cap before it was scored, or lost by a Redis
  restart) shows as a gap in the camera's seq numbers: counted per camera in the scorer state hash (field
  `frames_dropped`) and in the worker's heartbeat, and logged.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time

import numpy as np
import redis

from models.detector.base import Detector
from models.detector.motion import MotionBaseline
from models.detector.scores import anomaly_maps, ignore_mask, raw_scores
from models.scoring.camera import CameraStream, ScorerConfig
from workers.bus import keys, schemas
from workers.bus.connection import CLUSTER_UNAVAILABLE, is_cluster
from workers.bus.keys import DROPPED_FIELD
from workers.config import Settings, hysteresis_config
from workers.inference import frame_reads, scorer_state
from workers.inference.alert_writes import end_alert, publish_outbox, queue_alert_event, stop_reason
from workers.inference.alerts import AlertTracker
from workers.inference.label_thresholds import LabelThresholds
from workers.inference.leases import CameraLeases, LeaseLost
from workers.inference.serving import load_serving_detector
from workers.inference.slots import CameraSlot, ScoredFrame, rate_changed
from workers.inference.snooze import Snoozes
from workers.proc.process import HEARTBEAT_PERIODS_ALIVE, WorkerProcess, read_heartbeats
from workers.store.cameras import camera_statuses, list_cameras
from workers.store.error_maps import encode_error_map

log = logging.getLogger(__name__)


class InferenceWorker(WorkerProcess):
    role = "inference"
    step_interval_s = 0.0  # step() blocks on the streams itself

    def __init__(
        self,
        settings: Settings,
        redis_url: str,
        *,
        worker_id: str | None = None,
        detector: Detector | None = None,
    ) -> None:
        super().__init__(settings, redis_url, worker_id=worker_id)
        self.client = self.redis
        self.detector = detector
        self.model_threshold: float | None = None  # the served version's adaptive alert threshold
        self.snoozes = Snoozes()
        self.label_thresholds = LabelThresholds(settings.alerts.label_ceiling)
        self._refused_model: str | None = None  # a published version that failed to load here
        self.slots: dict[str, CameraSlot] = {}
        self.leases = CameraLeases(self.client, self.worker_id)
        self.frames_scored = self.frames_dropped = self.batches = self.last_batch_size = 0
        self._next_refresh = 0.0

    # ------------------------------------------------------------ process hooks
    def setup(self) -> None:
        if self.detector is None:
            self.detector, self.model_threshold = load_serving_detector(self.settings, self.client)
        self.event("serving", model=self.detector.info.version, kind=self.detector.info.kind)

    def step(self) -> None:
        try:
            if time.monotonic() >= self._next_refresh:
                self.refresh()
                self._check_model()
                self._next_refresh = time.monotonic() + self.settings.inference.lease_ttl_ms / 3000.0
            scored = self.score_batch()
        except (redis.ConnectionError, *CLUSTER_UNAVAILABLE) as exc:
            # Results of the batch in hand may be lost: rebuild camera state from Redis after reconnecting.
            for camera in list(self.slots):
                self.drop(camera, release=False)
            if isinstance(exc, redis.ConnectionError):
                raise
            raise redis.ConnectionError(f"Redis Cluster unavailable (failover?): {exc}") from exc
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # Redis came back without our consumer group (restarted without persistence): take the
            # cameras again, which creates it; the frames lost with it show as dropped.
            self.event("consumer_group_lost", logging.WARNING, error=exc)
            for camera in list(self.slots):
                self.drop(camera, release=False)
            self._next_refresh = 0.0
            return
        if not scored and not self.slots:
            self.wait(0.2)

    def teardown(self) -> None:
        with contextlib.suppress(redis.ConnectionError, *CLUSTER_UNAVAILABLE):  # leases expire by themselves
            self.release_all()

    def heartbeat_info(self) -> dict[str, object]:
        return self.status()

    # ------------------------------------------------------------ ownership
    def refresh(self) -> None:
        """Renew leases, take free cameras up to a fair share, drop removed ones."""
        ttl = self.settings.inference.lease_ttl_ms
        configs = {config.id: config for config in list_cameras(self.client)}
        statuses = camera_statuses(self.client)
        relabelled = self.label_thresholds.refresh(self.client, list(self.slots))
        for camera in list(self.slots):
            config = configs.get(camera)
            if config is None or not config.enabled:
                self._close_alert(camera, "camera disabled" if config else "camera removed")
                self.drop(camera, release=True)
            elif not self.leases.renew(camera, ttl):
                self.drop(camera, release=False)
            else:
                old_rate = self.slots[camera].rate
                rate = self._rate(config, statuses.get(camera))
                rate = rate if rate_changed(old_rate, rate) else old_rate  # a wobble changes nothing
                if config != self.slots[camera].config or camera in relabelled or rate != old_rate:
                    self._reconfigure(camera, config, rate)
            if camera in self.slots and (reason := stop_reason(statuses.get(camera))):
                self._close_alert(camera, reason)
        wanted = [cam for cam, cfg in sorted(configs.items()) if cfg.enabled]
        share = math.ceil(len(wanted) / max(self._live_workers(), 1))
        for camera in list(self.slots)[share:]:
            self.drop(camera, release=True)  # give cameras back so a newly started worker gets its share
        for camera in wanted:
            if len(self.slots) >= share:
                break
            if camera not in self.slots and self.leases.acquire(camera, ttl):
                self._acquire(camera, configs[camera], self._rate(configs[camera], statuses.get(camera)))

    def _live_workers(self) -> int:
        horizon = time.time() - HEARTBEAT_PERIODS_ALIVE * self.settings.heartbeat_s
        beats = read_heartbeats(self.client)
        return len({self.worker_id} | {b.id for b in beats if b.role == "inference" and b.ts >= horizon})

    def _rate(self, config: schemas.CameraConfig, status: schemas.CameraStatus | None) -> float:
        """The rate a camera's frames reach the detector: as its ingest measures it while it streams (a
        slower source gives fewer than the analysis fps), else its analysis fps."""
        nominal = self.settings.analysis.for_camera(config).fps
        measured = status.fps if status is not None and status.state == "streaming" else 0.0
        return min(nominal, measured) if measured > 0 else nominal

    def _acquire(self, camera: str, config: schemas.CameraConfig, rate: float) -> None:
        stream_key = keys.frames_stream(camera)
        try:
            self.client.xgroup_create(stream_key, keys.INFERENCE_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        claimed = frame_reads.claim_pending(self.client, stream_key, self.worker_id)
        slot = self._new_slot(config, rate)
        saved = self.client.hgetall(keys.scorer_state_key(camera))
        if scorer_state.has_checkpoint(saved):
            slot.session = scorer_state.load(self.client, camera, saved, slot.stream)
            slot.checkpoint_ts = time.time()  # the saved checkpoint and log stand for the state loaded
        if b"tracker" in saved:
            slot.tracker.load_state_dict(json.loads(saved[b"tracker"]))
        if published := publish_outbox(self.client, camera, recovering=True):
            log.info("camera %s: %d alert events of the previous owner published", camera, published)
        last_score = self.client.xrevrange(keys.scores_stream(camera), count=1)
        if last_score:
            slot.last_seq = int(last_score[0][1][b"seq"])
        self.slots[camera] = slot
        log.info("camera %s: taken by %s (%d pending frames claimed)", camera, self.worker_id, claimed)

    def _new_slot(self, config: schemas.CameraConfig, rate: float) -> CameraSlot:
        info = self.detector.info
        zones = [zone.points for zone in config.ignore_zones]
        learned = not isinstance(self.detector, MotionBaseline)
        labelled = self.label_thresholds.of(self.client, config.id)
        hysteresis = hysteresis_config(
            self.settings.alerts, config.threshold, learned, self.model_threshold, labelled, fps=rate
        )
        return CameraSlot(
            config=config,
            stream=CameraStream(info.for_camera(config.id), ScorerConfig().at_rate(rate)),
            tracker=AlertTracker(config.id, hysteresis),
            mask=ignore_mask(info.height, info.width, zones),
            rate=rate,
        )

    def _reconfigure(self, camera: str, config: schemas.CameraConfig, rate: float) -> None:
        old = self.slots[camera]
        slot = self._new_slot(config, rate)
        if rate != old.rate:
            old.stream.scorer.set_rate(rate)
            log.info(
                "camera %s: analysed at %.3g frames/s: scores smoothed over %d frames, alerts opened after %d "
                "and closed after %d",
                camera,
                rate,
                old.stream.scorer.config.smoothing,
                slot.tracker.config.start_frames,
                slot.tracker.config.end_frames,
            )
        slot.stream, slot.read_id, slot.needs_history = old.stream, old.read_id, old.needs_history
        slot.last_seq, slot.dropped, slot.session = old.last_seq, old.dropped, old.session
        slot.checkpoint_ts = old.checkpoint_ts
        slot.tracker.load_state_dict(old.tracker.state_dict())
        self.slots[camera] = slot
        log.info("camera %s: settings changed", camera)

    def _close_alert(self, camera: str, reason: str) -> None:
        slot = self.slots[camera]
        try:
            alert = end_alert(self.client, self.leases, camera, slot.tracker, slot.last_seq, reason)
        except LeaseLost:
            self.drop(camera, release=False)  # the next owner decides from the saved state
            return
        if alert is not None:
            log.info("alert end %s: camera %s (%s)", alert.id, camera, reason)

    def drop(self, camera: str, *, release: bool) -> None:
        self.slots.pop(camera, None)
        if release:
            self.leases.release(camera)
        log.info("camera %s: released by %s", camera, self.worker_id)

    def release_all(self) -> None:
        for camera in list(self.slots):
            self.drop(camera, release=True)

    def swap_detector(self, detector: Detector) -> None:
        """Between batches: new streams for the new model (its input size, calibration), the cameras'
        statistics carried to it; open alerts go on."""
        self.detector = detector
        for camera, slot in list(self.slots.items()):
            fresh = self._new_slot(slot.config, slot.rate)
            fresh.stream = slot.stream.carried_to(detector.info.for_camera(camera))
            fresh.tracker, fresh.read_id = slot.tracker.retuned(fresh.tracker.config), slot.read_id
            fresh.last_seq, fresh.dropped = slot.last_seq, slot.dropped
            self.slots[camera] = fresh
        log.info("now serving model %s (%s)", detector.info.version, detector.info.kind)

    # ------------------------------------------------------------ scoring
    def score_batch(self) -> int:
        """Read one batch across owned cameras, score it, write it. Returns the frames scored."""
        if not self.slots:
            return 0
        inference = self.settings.inference
        per_stream = max(1, inference.batch_max // len(self.slots))
        streams = {keys.frames_stream(camera): slot.read_id for camera, slot in self.slots.items()}
        response = frame_reads.read(
            self.client, self.worker_id, streams, per_stream, max(inference.batch_wait_ms, 1), self.wait
        )
        batch: list[tuple[str, str, schemas.FrameMessage]] = []
        with_entries = set()
        for stream_key, entries in response or []:
            camera = frame_reads.camera_of(stream_key)
            if camera not in self.slots or not entries:
                continue
            with_entries.add(camera)
            for entry_id, fields in entries:
                if fields:
                    batch.append((camera, entry_id.decode(), schemas.FrameMessage.from_fields(fields)))
                else:  # a pending entry trimmed away by the stream cap: nothing left to score
                    self.client.xack(stream_key, keys.INFERENCE_GROUP, entry_id)
        for camera, slot in self.slots.items():
            if slot.read_id == "0" and camera not in with_entries:
                slot.read_id = ">"  # claimed backlog done: new entries from now on
        if not batch:
            return 0
        scored = self._score(batch)
        lost = self._write(scored)
        # State objects advanced for frames whose results were discarded: rebuild them from Redis.
        for camera in lost:
            self.drop(camera, release=False)
        scored = [item for item in scored if item.camera not in lost]
        if not scored:
            return 0
        self.frames_scored += len(scored)
        self.batches += 1
        self.last_batch_size = len(scored)
        return len(scored)

    def _frame_array(self, frame: schemas.FrameMessage) -> np.ndarray:
        return frame.array((self.detector.info.height, self.detector.info.width))

    def _fill_history(
        self, camera: str, slot: CameraSlot, first: schemas.FrameMessage, first_id: str
    ) -> None:
        """After a takeover or a model swap: the frames before `first` of the same session."""
        slot.needs_history = False
        history = self.detector.info.history
        if history == 0:
            return
        for past in frame_reads.history_before(self.client, camera, first, first_id, history):
            slot.stream.push(self._frame_array(past), past.session)

    def _score(self, batch: list[tuple[str, str, schemas.FrameMessage]]) -> list[ScoredFrame]:
        clips = []
        for camera, entry_id, frame in batch:
            slot = self.slots[camera]
            if slot.needs_history:
                self._fill_history(camera, slot, frame, entry_id)
            clips.append(slot.stream.push(self._frame_array(frame), frame.session))
        info = self.detector.info
        # each camera as the model serves it: its own view where kept, no place map where it moved
        cameras = [camera for camera, _, _ in batch]
        maps = self.detector.served_maps(np.stack(clips), cameras)
        self.snoozes.refresh(self.client, schemas.now())
        for index, (camera, _, _) in enumerate(batch):
            slot = self.slots[camera]
            mask = self.snoozes.mask(slot.config, slot.mask, info.height, info.width)
            if mask is not None:  # no evidence inside ignore zones and snoozed ones
                maps[index] *= mask
        raws = raw_scores(self.detector, maps, cameras)
        scored = [
            ScoredFrame(camera, entry_id, frame, anomaly_map)
            for (camera, entry_id, frame), anomaly_map in zip(
                batch, anomaly_maps(self.detector, maps, cameras), strict=True
            )
        ]
        model = self.detector.info.version
        for item, raw in zip(scored, raws, strict=True):
            slot = self.slots[item.camera]
            item.raw = float(raw)
            item.score = slot.stream.score(item.raw)
            item.learned = slot.stream.scorer.learned_last
            if slot.session is not None and item.frame.session != slot.session:
                ended = slot.tracker.close_open(item.frame.ts, "camera reconnected: a new stream session")
                item.events = [("end", ended)] if ended else []
            slot.session = item.frame.session
            # a snoozed camera's frames count as normal: no alert opens, an open one ends as usual
            score = 0.0 if self.snoozes.silenced(item.camera, item.frame.ts) else item.score
            item.events += slot.tracker.update(item.frame.seq, item.frame.ts, score, model)
        return scored

    def _dropped_before(self, scored: list[ScoredFrame]) -> dict[str, tuple[int, int]]:
        """Per camera: (frames missing from its seq numbers before or within the batch, last seq of the batch)."""
        result: dict[str, tuple[int, int]] = {}
        for item in scored:
            missing, last = result.get(item.camera, (0, self.slots[item.camera].last_seq))
            seq = item.frame.seq
            if last is not None and seq > last + 1:
                missing += seq - last - 1
            result[item.camera] = (missing, seq)  # (a seq going back: the camera's numbering restarted)
        return result

    def _write(self, scored: list[ScoredFrame]) -> set[str]:
        """Writes the batch's results and acks (one transaction; one per camera on a cluster); returns the
        cameras whose results were discarded because another worker owns them now."""
        cameras = sorted({item.camera for item in scored})
        groups = [[camera] for camera in cameras] if is_cluster(self.client) else [cameras]
        dropped = self._dropped_before(scored)
        lost: set[str] = set()
        for group in groups:
            items = [item for item in scored if item.camera in group]
            try:
                self._write_group(group, items, dropped)
            except LeaseLost as exc:
                log.warning("batch discarded: %s", exc)
                lost.update(group)
                continue
            for camera in {item.camera for item in items if item.events}:
                publish_outbox(self.client, camera)  # (a cluster: the events just written to its outbox)
        self._count_written([item for item in scored if item.camera not in lost], dropped)
        return lost

    def _write_group(
        self, cameras: list[str], scored: list[ScoredFrame], dropped: dict[str, tuple[int, int]]
    ) -> None:
        """One MULTI/EXEC, guarded by the cameras' leases: their results, scorer state and acks."""
        now = time.time()
        with self.client.pipeline(transaction=True) as pipe:
            try:
                self.leases.watch_owned(pipe, cameras)
                pipe.multi()
                for item in scored:
                    self._queue_results(pipe, item)
                for camera in cameras:
                    slot = self.slots[camera]
                    # with the results they produced: a takeover resumes exactly where the scores end
                    checkpoint = now - slot.checkpoint_ts >= scorer_state.CHECKPOINT_S
                    raws = [item.raw for item in scored if item.camera == camera and item.learned]
                    scorer_state.queue_save(pipe, camera, slot.stream, raws, checkpoint)
                    if checkpoint:
                        slot.checkpoint_ts = now
                    pipe.hset(keys.scorer_state_key(camera), "tracker", json.dumps(slot.tracker.state_dict()))
                    if dropped[camera][0]:
                        pipe.hincrby(keys.scorer_state_key(camera), DROPPED_FIELD, dropped[camera][0])
                    ids = [item.entry_id for item in scored if item.camera == camera]
                    pipe.xack(keys.frames_stream(camera), keys.INFERENCE_GROUP, *ids)
                pipe.execute()
            except redis.WatchError as exc:
                raise LeaseLost(
                    f"the lease of {', '.join(cameras)} changed while the batch was written"
                ) from exc

    def _count_written(self, scored: list[ScoredFrame], dropped: dict[str, tuple[int, int]]) -> None:
        for camera in {item.camera for item in scored}:
            missing, last_seq = dropped[camera]
            slot = self.slots[camera]
            slot.last_seq = last_seq
            if missing:
                slot.dropped += missing
                self.frames_dropped += missing
                log.warning(
                    "camera %s: %d frames were dropped before scoring (stream cap or Redis restart)",
                    camera,
                    missing,
                )
        written = time.time()
        for item in scored:
            slot = self.slots[item.camera]
            slot.scored += 1
            slot.lag_s = written - item.frame.ts
            for event_type, alert in item.events:
                log.info(
                    "alert %s %s: camera %s peak %.2f", event_type, alert.id, alert.camera, alert.peak_score
                )

    def _queue_results(self, pipe: redis.client.Pipeline, item: ScoredFrame) -> None:
        settings = self.settings
        slot = self.slots[item.camera]
        frame = item.frame
        cap = settings.analysis.for_camera(slot.config).buffer_frames
        message = schemas.ScoreMessage(
            camera=item.camera,
            seq=frame.seq,
            ts=frame.ts,
            frame_id=item.entry_id,
            score=item.score,
            raw=item.raw,
            model=self.detector.info.version,
            anomalous=item.score >= slot.tracker.config.threshold,
            session=frame.session,
        )
        pipe.xadd(keys.scores_stream(item.camera), message.to_fields(), maxlen=cap, approximate=True)
        if item.score >= 0.5 * slot.tracker.config.threshold or slot.tracker.alert is not None:
            pipe.set(
                keys.error_map_key(item.camera, frame.seq),
                encode_error_map(item.error_map),
                ex=round(settings.retention.for_camera(slot.config).error_maps_s),
            )
        if message.anomalous:
            self._add_heat(pipe, slot, item)
        for event_type, alert in item.events:
            queue_alert_event(pipe, event_type, alert)

    def _add_heat(self, pipe: redis.client.Pipeline, slot: CameraSlot, item: ScoredFrame) -> None:
        """Accumulate where anomalies are, per minute, for the camera heat map over a time window."""
        minute = int(item.frame.ts // 60)
        if slot.heat is None or slot.heat_minute != minute or slot.heat.shape != item.error_map.shape:
            slot.heat_minute, slot.heat = minute, np.zeros_like(item.error_map, dtype=np.float32)
        slot.heat += item.error_map
        pipe.set(
            keys.heat_bucket_key(item.camera, minute),
            encode_error_map(slot.heat),
            ex=round(self.settings.retention.for_camera(slot.config).heat_s),
        )

    # ------------------------------------------------------------ loop
    def status(self) -> dict[str, object]:
        return {
            "cameras": sorted(self.slots),
            "frames_scored": self.frames_scored,
            "frames_dropped": self.frames_dropped,
            "dropped_by_camera": {cam: slot.dropped for cam, slot in self.slots.items() if slot.dropped},
            "batches": self.batches,
            "last_batch_size": self.last_batch_size,
            "model": self.detector.info.version if self.detector else None,
            "lag_s": {cam: round(s.lag_s, 3) for cam, s in self.slots.items() if s.lag_s is not None},
        }

    def _check_model(self) -> None:
        if self.settings.inference.model_path is not None:
            return
        current = self.client.get(keys.CURRENT_MODEL)
        if current and current.decode() not in (self.detector.info.version, self._refused_model):
            try:
                detector, threshold = load_serving_detector(self.settings, self.client)
            except Exception as exc:  # a model that fails to load never serves; the old one goes on
                self._refused_model = current.decode()
                log.error(
                    "model %s not loaded, keeping %s: %s", current.decode(), self.detector.info.version, exc
                )
                return
            self.model_threshold = threshold
            self.swap_detector(detector)
