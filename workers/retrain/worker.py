"""Retraining worker: self-training cycles over the cameras' buffered frames, published as model versions.

Every `interval_s` it checks how many frames were scored since the last cycle. Past `cycle_frames`, it
reads the cameras' newest `window_frames` frames (shared evenly among them) with the scores the inference
worker wrote (and the operators' labels), publishes at once a view that moved (SelfTrainer.check_view,
between cycles and first in each), runs one cycle of models/selftrain/trainer.py (mine, fine-tune,
validate) and publishes an accepted model: VERSION.onnx/.pt in the models folder, a ModelVersion record,
then the current-version key, which inference workers poll between batches. A site with no model trains a
first one from its own frames (cold start). Everything heavy runs here, off the inference path.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import redis

from models.detector.base import PLACE_SILENCED_CAMERAS
from models.detector.motion import MotionBaseline
from models.detector.runtime import InvalidModelError, TorchDetector, load_detector
from models.selftrain.config import Window
from models.selftrain.cycle import CycleResult
from models.selftrain.feedback import kind_key
from models.selftrain.trainer import SelfTrainer, concat_windows
from workers.bus import keys, schemas
from workers.config import Settings, online_config
from workers.inference.categories import categorize_alerts, describe_new_alerts
from workers.proc.process import WorkerProcess
from workers.store import model_registry
from workers.store.cameras import analysis_fps, list_cameras, source_size
from workers.store.labels import accepted_kinds, labels_version, latest_frame_labels

log = logging.getLogger(__name__)


LABEL_CODES = {"normal": 0, "abnormal": 1}


def torch_weights_for(path: Path) -> Path | None:
    """The PyTorch weights a model is adapted from: the file itself (.pt) or MODEL.pt beside MODEL.onnx."""
    candidate = path if path.suffix == ".pt" else path.with_suffix(".pt")
    return candidate if candidate.is_file() else None


@dataclass
class CameraWindow:
    camera: str
    window: Window
    last_seq: int


def joined(windows: list[CameraWindow]) -> Window:
    """The cameras' windows as one, each frame named by its camera (the model scores it as that camera)."""
    return concat_windows([w.window for w in windows], [w.camera for w in windows])


def read_window(client: redis.Redis, camera: str, count: int, height: int, width: int) -> CameraWindow | None:
    """A camera's newest `count` buffered frames that have been scored, with the operators' labels.
    Segments change at reconnects and at gaps in the frame numbers (frames trimmed or never scored)."""
    scored = {
        schemas.ScoreMessage.from_fields(fields).seq
        for _, fields in client.xrevrange(keys.scores_stream(camera), count=count)
    }
    frames, seqs, sessions = [], [], []
    for _, fields in reversed(client.xrevrange(keys.frames_stream(camera), count=count)):
        frame = schemas.FrameMessage.from_fields(fields)
        if frame.seq not in scored:
            continue
        frames.append(frame.array((height, width)))
        seqs.append(frame.seq)
        sessions.append(frame.session)
    if not frames:
        return None
    seq = np.array(seqs)
    breaks = np.r_[0, (np.diff(seq) != 1) | (np.diff(np.array(sessions)) != 0)].cumsum()
    labels, kinds = np.full(len(seq), -1), np.zeros(len(seq), dtype=np.int64)
    for frame_seq, label in latest_frame_labels(client, camera, int(seq[0]), int(seq[-1])).items():
        row = int(np.searchsorted(seq, frame_seq))
        if seq[row] == frame_seq:  # a labelled frame may be missing from the window (gap, never scored)
            labels[row] = LABEL_CODES[label.label]
            if label.accepts_kind:
                assert label.category is not None
                kinds[row] = kind_key(label.category)
    window = Window(np.stack(frames), breaks, labels, kinds)
    return CameraWindow(camera, window, int(seq[-1]))


def new_scored_frames(client: redis.Redis, camera: str, cursor: int, batch: int = 500) -> int:
    """How many of a camera's buffered scores are for frames after `cursor` (read newest first, a few
    hundred small entries at a time, until the cursor is reached)."""
    count, upper = 0, "+"
    while True:
        entries = client.xrevrange(keys.scores_stream(camera), max=upper, count=batch)
        for _, fields in entries:
            if schemas.ScoreMessage.from_fields(fields).seq <= cursor:
                return count
            count += 1
        if len(entries) < batch:
            return count
        upper = f"({entries[-1][0].decode()}"


def view_check_cameras(cameras: list[str], turn: int, frames: int, window_frames: int) -> list[str]:
    """The cameras whose newest `frames` a check between cycles reads at its `turn`: every camera where
    they fit a cycle's window (`window_frames`), else the next of the fewest near-equal groups that do, in
    turn, so that a large site's check costs what a cycle's window does. A group holds two cameras at
    least: a window of one camera that moved is taken for the site's (SelfTrainer.check_view)."""
    groups = max(1, min(math.ceil(len(cameras) * frames / max(window_frames, 1)), len(cameras) // 2))
    return list(np.array_split(np.array(cameras, dtype=object), groups)[turn % groups])


def yield_cpu_to_inference(settings: Settings) -> None:
    """Lowers this process's scheduling priority by `retrain.nice`: a cycle beside inference workers on
    the same cores slows down rather than making them fall behind."""
    if settings.retrain.nice > 0:
        os.nice(settings.retrain.nice)
        log.info("retraining at niceness +%d (VIGIL_RETRAIN__NICE)", settings.retrain.nice)


class RetrainWorker(WorkerProcess):
    role = "retrain"

    def __init__(self, settings: Any, redis_url: str, *, worker_id: str | None = None) -> None:
        super().__init__(settings, redis_url, worker_id=worker_id)
        self.step_interval_s = settings.retrain.interval_s
        self.state = "starting"
        self.reason = ""
        self.trainer: SelfTrainer | None = None
        self.last_cycle: schemas.RetrainCycle | None = None
        self._labels_seen: bytes | None = None
        self._kinds_checked: tuple[Any, ...] | None = None  # the model and labels the kinds were checked for
        self._view_checked_at = 0  # new frames since the last cycle when the view was last checked
        self._view_check_turn = 0  # which group of a large site's cameras the next check reads

    def setup(self) -> None:
        import torch

        if self.settings.retrain.threads > 0:
            torch.set_num_threads(self.settings.retrain.threads)
        self.settings.models_dir.mkdir(parents=True, exist_ok=True)
        self.trainer = SelfTrainer(
            online_config(self.settings), self.settings.models_dir, device="cpu", threads=1
        )

    def heartbeat_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"state": self.state, "reason": self.reason}
        if self.trainer is not None and self.trainer.metadata is not None:
            info["model"] = self.trainer.metadata["version"]
        if self.last_cycle is not None:
            info["last_cycle"] = {
                "accepted": self.last_cycle.accepted,
                "reason": self.last_cycle.reason,
                "mined": self.last_cycle.mined,
                "seconds": self.last_cycle.seconds,
            }
        return info

    def _set_state(self, state: str, reason: str = "") -> None:
        if (state, reason) != (self.state, self.reason):
            self.event("retrain_state", state=state, reason=reason)
        self.state, self.reason = state, reason

    def step(self) -> None:
        settings = self.settings.retrain
        if not settings.enabled:
            self._set_state("disabled", "VIGIL_RETRAIN__ENABLED is false")
            return
        assert self.trainer is not None
        if not self._follow_current():
            return
        cameras = [c.id for c in list_cameras(self.redis) if c.enabled]
        if not cameras:
            self._set_state("idle", "no cameras")
            return
        # fits afresh follow the cameras' footage (a model from another site need not share its flow)
        self.trainer.config = online_config(self.settings).for_source(
            source_size(self.redis, cameras), analysis_fps(self.redis, cameras)
        )
        if self.trainer.model is None:
            per_camera = self._per_camera(cameras)
            buffered = sum(min(int(self.redis.xlen(keys.scores_stream(c))), per_camera) for c in cameras)
            if buffered < settings.coldstart_frames:
                self._set_state(
                    "waiting", f"cold start after {settings.coldstart_frames} frames ({buffered} scored)"
                )
                return
            self._set_state("training", "cold start: a first model from the cameras' own frames")
            windows = self._windows(cameras)
            result = self.trainer.cold_start(
                joined(windows),
                self.trainer.config.detector,
                self._baseline(),
            )
            self._finish(windows, result, origin="cold_start", parent=None)
            return
        if self._withdraw_kinds():
            return
        self._categorize()
        cursors = {k.decode(): int(v) for k, v in self.redis.hgetall(keys.RETRAIN_CURSOR).items()}
        new = sum(new_scored_frames(self.redis, camera, cursors.get(camera, -1)) for camera in cameras)
        if new < settings.cycle_frames:
            if self._check_view(cameras, new):
                return
            self._set_state("waiting", f"next cycle after {settings.cycle_frames} new frames ({new} so far)")
            return
        self._view_checked_at = 0
        windows = self._windows(cameras)
        total = sum(len(w.window) for w in windows)
        self._set_state("training", f"cycle over {total} frames of {len(windows)} cameras")
        parent = self.trainer.metadata["version"] if self.trainer.metadata else None

        def publish_view(moved: CycleResult) -> None:
            # a view that moved is published before the cycle's mining and adaptation, which take minutes
            # on a busy CPU: until then the inference workers' old map lights every walker of that camera
            nonlocal parent
            self._finish([], moved, origin="self_training", parent=parent)
            parent = self.trainer.metadata["version"] if self.trainer.metadata else None

        result = self.trainer.cycle(joined(windows), publish_view=publish_view)
        self._finish(windows, result, origin="self_training", parent=parent)

    def _check_view(self, cameras: list[str], new: int) -> bool:
        """Between cycles, every `view_check_frames` new frames: the model served with its maps carried to
        the view, or its place map silenced, at once where the newest frames show that the view moved
        (SelfTrainer.check_view); a large site's cameras in turns (view_check_cameras)."""
        assert self.trainer is not None
        count = self.trainer.config.view_check_frames
        if count == 0 or new - self._view_checked_at < count:
            return False
        group = view_check_cameras(cameras, self._view_check_turn, count, self.settings.retrain.window_frames)
        self._view_check_turn += 1
        windows = self._windows(group, count)
        if not windows:  # trimmed or not yet scored: the next step looks again
            return False
        self._view_checked_at = new
        parent = self.trainer.metadata["version"] if self.trainer.metadata else None
        result = self.trainer.check_view(joined(windows))
        if result is None:
            return False
        self._finish([], result, origin="self_training", parent=parent)
        return True

    def _categorize(self) -> None:
        """Descriptors of new alerts, and their categories once operators have named some."""
        assert (
            self.trainer is not None and self.trainer.model is not None and self.trainer.metadata is not None
        )
        detector = TorchDetector(self.trainer.model, self.trainer.metadata)
        if describe_new_alerts(self.redis, detector) or self._labels_changed():
            categorize_alerts(self.redis, detector.info.version)

    def _withdraw_kinds(self) -> bool:
        """Serves at once the model without the per-cell exception's kinds that no label accepts any longer
        (an operator deleted or relabelled them), checked whenever the labels or the model change."""
        assert (
            self.trainer is not None and self.trainer.model is not None and self.trainer.metadata is not None
        )
        exception = self.trainer.model.exception
        if exception is None or not bool(exception.kinds.any()):
            return False
        cameras = [camera.id for camera in list_cameras(self.redis)]  # a kind accepted anywhere on the site
        checked = (self.trainer.metadata["version"], *(labels_version(self.redis, c) for c in cameras))
        if checked == self._kinds_checked:
            return False
        self._kinds_checked = checked
        parent = self.trainer.metadata["version"]
        result = self.trainer.withdraw(accepted_kinds(self.redis, cameras))
        if result is None:
            return False
        self._finish([], result, origin="feedback", parent=parent)
        return True

    def _labels_changed(self) -> bool:
        newest = self.redis.get(keys.FEEDBACK_LABEL_COUNTER)
        changed = newest != self._labels_seen
        self._labels_seen = newest
        return changed

    def _baseline(self) -> MotionBaseline:
        """What inference workers score with while the site has no model."""
        analysis = self.settings.analysis
        return MotionBaseline(analysis.height, analysis.width)

    def _follow_current(self) -> bool:
        """The trainer works on the current published model (after a rollback too). False: cannot train."""
        assert self.trainer is not None
        current = model_registry.current_version(self.redis)
        if current is None:
            return True  # cold start
        if self.trainer.metadata is not None and self.trainer.metadata["version"] == current.version:
            return True
        weights = torch_weights_for(Path(current.path))
        if weights is None:
            self._set_state(
                "paused",
                f"{current.version} has no PyTorch weights ({Path(current.path).with_suffix('.pt').name} "
                "beside it) to fine-tune",
            )
            return False
        try:
            torch_model = load_detector(weights, "cpu", 0)
            serving = load_detector(Path(current.path), "cpu", 1)
        except InvalidModelError as exc:
            self._set_state("paused", f"cannot load {current.version}: {exc}")
            return False
        self.trainer.adopt(torch_model.model, torch_model.info.metadata, serving)
        self.event("following_model", model=current.version)
        return True

    def _per_camera(self, cameras: list[str]) -> int:
        return max(self.settings.retrain.window_frames // len(cameras), 1)

    def _windows(self, cameras: list[str], per_camera: int | None = None) -> list[CameraWindow]:
        """Each camera's newest `per_camera` scored frames (None: its share of the cycle's window)."""
        assert self.trainer is not None
        per_camera = per_camera or self._per_camera(cameras)
        metadata = self.trainer.metadata
        height = int(metadata["height"]) if metadata else self.settings.analysis.height
        width = int(metadata["width"]) if metadata else self.settings.analysis.width
        windows = []
        for camera in cameras:
            window = read_window(self.redis, camera, per_camera, height, width)
            if window is not None:
                windows.append(window)
        return windows

    def _finish(
        self, windows: list[CameraWindow], result: CycleResult, origin: str, parent: str | None
    ) -> None:
        """Publishes an accepted model (or records a rejected one), the cycle, and the cameras' cursors."""
        assert self.trainer is not None
        report = result.report
        candidate = result.metadata["version"] if result.metadata else report.get("candidate")
        if result.accepted and result.metadata is not None:
            onnx_path, _ = self.trainer.model_paths()
            version = schemas.ModelVersion(
                version=result.metadata["version"],
                path=str(onnx_path.resolve()),
                parent=parent,
                kind=result.metadata["kind"],
                origin=origin,  # type: ignore[arg-type]
                metrics=report,
                alert_threshold=result.metadata.get("alert_threshold"),
                reason=result.reason,
                place_silenced_cameras=result.metadata.get(PLACE_SILENCED_CAMERAS) or [],
            )
            if not model_registry.publish(self.redis, version, parent):
                result = CycleResult(False, "the current model changed during the cycle (rollback?)", report)
        if not result.accepted and candidate is not None:
            model_registry.record_rejected(
                self.redis,
                schemas.ModelVersion(
                    version=candidate,
                    path="",
                    parent=parent,
                    kind=report.get("candidate_kind", ""),
                    origin=origin,  # type: ignore[arg-type]
                    metrics=report,
                    reason=result.reason,
                ),
            )
        cycle = schemas.RetrainCycle(
            started_ts=time.time() - float(report.get("seconds", 0.0)),
            seconds=float(report.get("seconds", 0.0)),
            cameras=[w.camera for w in windows],
            window_frames=sum(len(w.window) for w in windows),
            accepted=result.accepted,
            reason=result.reason,
            candidate=candidate,
            parent=parent,
            mined=report.get("mined", {}),
            report=report,
        )
        model_registry.record_cycle(self.redis, cycle, {w.camera: w.last_seq for w in windows})
        self.last_cycle = cycle
        self.event(
            "cycle_done",
            accepted=result.accepted,
            candidate=candidate,
            reason=result.reason,
            mined=report.get("mined"),
            seconds=cycle.seconds,
        )
        self._set_state("waiting", "")
