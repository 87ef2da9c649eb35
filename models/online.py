"""A site's self-improving detector: cold start, self-training cycles, model files, adaptive threshold.

`SelfTrainer` holds what the retraining worker keeps between cycles (the model being improved, the replay
of earlier normal footage, the consensus threshold). The worker feeds it windows read from Redis and
publishes what it accepts; `stream_online` feeds it a dataset streamed exactly as the inference worker
scores cameras, for `vigil eval --mode online|coldstart`. Both run the same cycle code.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from models.detector import Detector
from models.evaluation import VideoScores
from models.fitting import FitConfig
from models.runtime import load_detector, save_detector
from models.scoring import ScoreCalibration, ScorerConfig, score_of_z
from models.selftrain import (
    CycleResult,
    SelfTrainConfig,
    Window,
    consecutive_runs,
    mine,
    run_cycle,
    run_videos,
    window_evidence,
)
from models.stream import CameraStream, raw_scores
from models.streams import DetectorConfig, DetectorNet
from models.thresholds import ConsensusThreshold

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OnlineConfig:
    selftrain: SelfTrainConfig = field(default_factory=SelfTrainConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)  # what a cold start fits
    window_frames: int = 3000  # frames a cycle looks at (the newest)
    cycle_frames: int = 600  # new frames between cycles
    replay_frames: int = 3000  # earlier mined normal frames kept for replay
    coldstart_frames: int = 1500  # frames a camera without a model needs before a first one is trained
    coldstart_min_frames: int = 200  # confidently normal frames among them needed to fit it
    reference_frames: int = 1000  # fixed frames every model scores for the consensus threshold
    adaptive_threshold: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def concat_windows(windows: list[Window]) -> Window:
    """One window of several cameras' windows: history and runs never cross from one to the next."""
    segments, offset = [], 0
    for window in windows:
        _, codes = np.unique(window.segments, return_inverse=True)
        segments.append(codes + offset)
        offset += int(codes.max()) + 1 if len(codes) else 0
    labels = None
    if any(w.labels is not None for w in windows):
        labels = np.concatenate([w.labels if w.labels is not None else np.full(len(w), -1) for w in windows])
    return Window(
        frames=np.concatenate([w.frames for w in windows]),
        segments=np.concatenate(segments),
        labels=labels,
    )


class SelfTrainer:
    """The model a site improves, between cycles. Models are written to `models_dir` as VERSION.pt (the
    weights fine-tuned next) and VERSION.onnx (served), and each is loaded back and checked before use."""

    def __init__(
        self,
        config: OnlineConfig,
        models_dir: Path,
        device: str = "cpu",
        threads: int = 0,
        model: DetectorNet | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.models_dir = models_dir
        self.device, self.threads = device, threads
        self.model, self.metadata = model, metadata
        self.serving: Detector | None = None
        self.replay: list[np.ndarray] = []
        self.reference: np.ndarray | None = None  # clips every model scores for the consensus
        self.consensus: ConsensusThreshold | None = None
        self.reference_raw: list[np.ndarray] = []
        if model is not None and metadata is not None:
            self.serving = self._materialize(model, metadata)

    # ------------------------------------------------------------ model files
    def _materialize(self, model: DetectorNet, metadata: dict[str, Any]) -> Detector:
        """Writes VERSION.pt and VERSION.onnx and loads the ONNX file back (raises InvalidModelError)."""
        stem = self.models_dir / metadata["version"]
        save_detector(model, metadata, stem.with_suffix(".pt"))
        save_detector(model, metadata, stem.with_suffix(".onnx"))
        return load_detector(stem.with_suffix(".onnx"), self.device, self.threads)

    def adopt(self, model: DetectorNet, metadata: dict[str, Any], serving: Detector) -> None:
        """Continue from a model published elsewhere (a rollback, an operator's file)."""
        self.model, self.metadata, self.serving = model, metadata, serving

    def model_paths(self) -> tuple[Path, Path]:
        assert self.metadata is not None
        stem = self.models_dir / self.metadata["version"]
        return stem.with_suffix(".onnx"), stem.with_suffix(".pt")

    # ------------------------------------------------------------ threshold
    def mining_threshold(self) -> float | None:
        """eta_s from the consensus once it has settled (None: the configured constant)."""
        if not self.config.adaptive_threshold or self.consensus is None or not self.consensus.stopped:
            return None
        return self.alert_threshold(with_level=False)  # mining reads scores without the level

    def alert_threshold(self, with_level: bool = True) -> float | None:
        """The served score at which a frame enters the consensus anomaly set (None before it settles)."""
        if self.consensus is None or not self.consensus.stopped or self.serving is None:
            return None
        calibration = ScoreCalibration.from_dict(self.serving.info.metadata["calibration"])
        if not with_level:
            calibration = replace(calibration, level=0.0)
        z = calibration.z(self.consensus.score_threshold(self.reference_raw[-1]))
        score = float(score_of_z(np.float64(z), ScorerConfig()))
        return float(np.clip(score, 0.5, 0.95))  # never so low that normal frames are mined as abnormal

    def _update_consensus(self, window: Window) -> None:
        assert self.serving is not None
        if self.reference is None:
            rng = np.random.default_rng(self.config.selftrain.seed)
            count = min(self.config.reference_frames, len(window))
            picks = np.sort(rng.choice(len(window), count, replace=False))
            self.reference = window.clips(picks, self.serving.info.history)
            self.consensus = ConsensusThreshold(items=count)
        assert self.consensus is not None
        raws = [
            raw_scores(self.serving, self.serving.stream_maps(self.reference[i : i + 32]))
            for i in range(0, len(self.reference), 32)
        ]
        self.reference_raw.append(np.concatenate(raws))
        self.consensus.update(self.reference_raw)

    # ------------------------------------------------------------ cycles
    def _remember_normal(self, window: Window, normal: np.ndarray) -> None:
        for run in consecutive_runs(normal, window.segments):
            self.replay.append(window.frames[run])
        total = sum(len(r) for r in self.replay)
        while self.replay and total - len(self.replay[0]) >= self.config.replay_frames:
            total -= len(self.replay.pop(0))  # the oldest go first

    def cold_start(self, window: Window, config: DetectorConfig, scored_by: Detector) -> CycleResult:
        """A first model fitted to a camera's own frames, without labels: the frames the detector that
        scored the window (the motion baseline) finds confidently normal, mined as in a cycle."""
        from models.pipeline import train_detector

        started = time.monotonic()
        selftrain = self.config.selftrain
        mined = mine(window, window_evidence(scored_by, window), selftrain)
        normal = np.flatnonzero(mined.normal)
        report: dict[str, Any] = {"cold_start": True, "window_frames": len(window), "mined": mined.counts()}
        if len(normal) < self.config.coldstart_min_frames:
            report["seconds"] = round(time.monotonic() - started, 2)
            reason = (
                f"too few confident normal frames for a first model ({len(normal)}; "
                f"{self.config.coldstart_min_frames} needed)"
            )
            return CycleResult(
                False, reason, report, mined_normal=mined.normal, mined_abnormal=mined.abnormal
            )
        videos = run_videos(window, normal)
        trained = train_detector(
            videos, config, {"dataset": "stream", "videos": len(videos)}, FitConfig(seed=selftrain.seed)
        )
        metadata = {**trained.metadata, "parent": None}
        self.serving = self._materialize(trained.detector.model, metadata)
        self.model, self.metadata = trained.detector.model, metadata
        self._remember_normal(window, normal)
        self._update_consensus(window)
        report["seconds"] = round(time.monotonic() - started, 2)
        return CycleResult(
            True,
            "first model fitted to the camera's own confidently normal footage",
            report,
            self.model,
            metadata,
            mined.normal,
            mined.abnormal,
        )

    def cycle(self, window: Window) -> CycleResult:
        """One self-training cycle; an accepted candidate is written, loaded back and becomes current."""
        from models.runtime import InvalidModelError

        assert self.model is not None and self.metadata is not None and self.serving is not None
        result = run_cycle(
            self.model,
            self.metadata,
            self.serving,
            window,
            self.replay,
            self.config.selftrain,
            self.mining_threshold(),
        )
        if not result.accepted or result.model is None or result.metadata is None:
            return result
        try:
            serving = self._materialize(result.model, result.metadata)
        except InvalidModelError as exc:
            return replace(
                result, accepted=False, reason=f"candidate does not load: {exc}", model=None, metadata=None
            )
        self.model, self.metadata, self.serving = result.model, result.metadata, serving
        if result.mined_normal is not None:
            self._remember_normal(window, np.flatnonzero(result.mined_normal))
        if self.reference is None or self.consensus is None or not self.consensus.stopped:
            self._update_consensus(window)
        threshold = self.alert_threshold()
        result.report["alert_threshold"] = threshold
        result.metadata["alert_threshold"] = threshold
        return result


ProgressCallback = Callable[[int], None]


@dataclass
class _Seen:
    """The newest frames of an online stream (enough for a window), with where each came from."""

    frames: list[np.ndarray] = field(default_factory=list)
    segments: list[np.ndarray] = field(default_factory=list)
    ids: list[tuple[str, int]] = field(default_factory=list)  # (video, frame index)

    def add(self, frames: np.ndarray, segment: int, video: str, first: int, keep: int) -> None:
        self.frames.append(frames)
        self.segments.append(np.full(len(frames), segment))
        self.ids += [(video, first + i) for i in range(len(frames))]
        if len(self.ids) > 2 * keep:  # keep only what a window needs
            window = self.window(keep)
            self.frames, self.segments, self.ids = [window.frames], [window.segments], self.ids[-keep:]

    def __len__(self) -> int:
        return len(self.ids)

    def window(self, count: int) -> Window:
        return Window(
            frames=np.concatenate(self.frames)[-count:], segments=np.concatenate(self.segments)[-count:]
        )


def stream_online(
    videos: dict[str, np.ndarray],
    trainer: SelfTrainer,
    fallback: Detector,
    cycle_log: list[dict[str, Any]],
    progress: ProgressCallback | None = None,
    batch_size: int = 32,
) -> dict[str, VideoScores]:
    """Streams `videos` one after another, each as a camera, through the service's scoring and the self-
    training loop: a cycle after every `cycle_frames` new frames over the newest `window_frames`, an
    accepted model swapped in between batches (fresh score state, history refilled), as the workers do.

    Until the trainer has a model, frames are scored by `fallback` (the service's motion baseline) and a
    first model is trained once `coldstart_frames` have been seen. Returns the scores as streamed; each
    cycle's entry in `cycle_log` names the frames it mined ("mined_frames": video and frame index), for a
    benchmark to check against labels (the loop itself never sees any).
    """
    config = trainer.config
    seen = _Seen()
    since_cycle = 0
    out: dict[str, VideoScores] = {}
    for index, (name, frames) in enumerate(videos.items()):
        detector = trainer.serving or fallback
        stream = CameraStream(detector.info)
        raw = np.empty(len(frames), dtype=np.float32)
        scores = np.empty(len(frames), dtype=np.float32)
        for start in range(0, len(frames), batch_size):
            chunk = frames[start : start + batch_size]
            clips = np.stack([stream.push(frame) for frame in chunk])
            raw[start : start + len(chunk)] = raw_scores(detector, detector.stream_maps(clips))
            for i in range(start, start + len(chunk)):
                scores[i] = stream.score(float(raw[i]))
            seen.add(chunk, index, name, start, config.window_frames)
            since_cycle += len(chunk)
            if progress is not None:
                progress(len(chunk))
            due = config.coldstart_frames if trainer.model is None else config.cycle_frames
            if (len(seen) if trainer.model is None else since_cycle) < due:
                continue
            window = seen.window(config.window_frames)
            ids = seen.ids[-len(window) :]
            if trainer.model is None:
                result = trainer.cold_start(window, config.detector, fallback)
            else:
                result = trainer.cycle(window)
            since_cycle = 0
            mined = {
                kind: [list(ids[i]) for i in np.flatnonzero(flags)]
                for kind, flags in (("normal", result.mined_normal), ("abnormal", result.mined_abnormal))
                if flags is not None
            }
            cycle_log.append(
                {
                    "after_frames": len(seen),
                    "accepted": result.accepted,
                    "reason": result.reason,
                    **result.report,
                    "mined_frames": mined,
                }
            )
            if result.accepted and trainer.serving is not None:
                detector = trainer.serving  # swap: fresh score state; history refilled from the stream
                stream = CameraStream(detector.info)
                for past in frames[max(0, start + len(chunk) - detector.info.history) : start + len(chunk)]:
                    stream.push(past)
        out[name] = VideoScores(raw=raw, scores=scores)
    return out
