"""One camera's causal scoring state: the code path shared by `vigil eval` and the inference worker.

For each new frame: `clip = stream.push(frame, session)` gives the detector input (padding the history at
the start of a stream or after a reconnect), the detector turns a batch of clips into stream maps,
`raw_scores()` (models/detector/scores.py) reduces them to frame scores, and `stream.score(raw)`
normalizes causally (`CameraScorer`: robust running statistics, a map to [0, 1], smoothing). No future
frame is ever looked at.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from models.detector.base import DetectorInfo
from models.detector.scores import (
    ScoreCalibration,
)
from models.scoring.sampling import frames_in

# the score is the mean of the last half second's normalized scores (5 frames at 10 frames/s, where it was
# chosen): counted in time, an anomaly takes as long to show at every camera rate (measured at 5 frames/s:
# the README's "A camera at half the frame rate")
SMOOTHING_S = 0.5


def padded_clips(
    frames: np.ndarray, indices: np.ndarray, history: int, first: np.ndarray | int = 0
) -> np.ndarray:
    """uint8 [len(indices), history + 1, H, W]: each frame of `frames` with its `history` past ones, the
    missing past (before `first`, a stream start) padded with the first frame, as CameraStream does."""
    offsets = np.arange(-history, 1)
    picks = np.maximum(np.asarray(indices)[:, None] + offsets[None, :], np.asarray(first).reshape(-1, 1))
    return frames[picks]


class CameraStream:
    def __init__(self, info: DetectorInfo, scorer_config: ScorerConfig | None = None) -> None:
        self.info = info
        calibration = info.metadata.get("calibration")
        self.scorer = CameraScorer(
            ScoreCalibration.from_dict(calibration) if calibration else None, scorer_config
        )
        self.history: deque[np.ndarray] = deque(maxlen=info.history)
        self.session: int | None = None

    def push(self, frame: np.ndarray, session: int = 0) -> np.ndarray:
        """The clip [history + 1, H, W] ending at `frame`; history restarts when `session` changes."""
        if frame.shape != (self.info.height, self.info.width):
            raise ValueError(
                f"frame shape {frame.shape} != detector input {(self.info.height, self.info.width)}"
            )
        if session != self.session:
            self.history.clear()
            self.session = session
        past = list(self.history)
        # At a stream start the missing past is the first frame repeated: a still scene, no false motion.
        padding = [past[0] if past else frame] * (self.info.history - len(past))
        clip = np.stack([*padding, *past, frame])
        self.history.append(frame)
        return clip

    def score(self, raw: float) -> float:
        return self.scorer.update(raw)

    def carried_to(self, info: DetectorInfo) -> CameraStream:
        """A stream for another model (a swap) that goes on from this camera's statistics
        (CameraScorer.carried_to); its history starts empty, to be refilled from the camera's frames."""
        stream = CameraStream(info, self.scorer.config)
        stream.scorer = self.scorer.carried_to(stream.scorer.calibration)
        return stream

    def state_dict(self) -> dict[str, Any]:
        return {"session": self.session, "scorer": self.scorer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.session = None  # history frames are not persisted; a takeover refills them from the stream
        self.scorer.load_state_dict(state.get("scorer", {}))


@dataclass(frozen=True)
class ScorerConfig:
    window: int = 3000  # raw scores remembered per camera for its running statistics
    # the calibration counts as this many frames: a camera's own statistics take over only after minutes of
    # footage, so that a start full of activity is not learned as its normal level
    prior_weight: int = 1000
    z_mid: float = 4.0  # robust z-score that maps to 0.5
    z_width: float = 2.0  # wide enough that strong anomalies still rank among themselves
    smoothing: int = 5  # causal mean over the last N normalized scores (SMOOTHING_S at 10 frames/s)
    # A frame this many robust spreads or more above the camera's statistics does not enter them: what the
    # camera sees as an outlier must not teach it what normal looks like. Without it, a stretch of
    # anomalies lifts the camera's normal level until they score as normal (live, a stream of Ped2's test
    # videos, 82% abnormal, fell from micro AUC 0.974 to 0.871; see the README's Live replay)
    learn_below_z: float = 3.0
    # ...unless the outliers outnumber the other frames by this many (outliers minus other frames, never
    # below 0: outlier_excess): a lasting change of the view (re-lit, moved) becomes the camera's normal
    # instead of one endless alert, on the prior's time scale (100 s of nothing else at 10 frames/s)
    relearn_after: int = 1000

    def at_rate(self, fps: float) -> ScorerConfig:
        """This config for a camera analysed at `fps`: its smoothing spans SMOOTHING_S."""
        return replace(self, smoothing=frames_in(SMOOTHING_S, fps))


def score_of_z(z: np.ndarray, config: ScorerConfig) -> np.ndarray:
    """The [0, 1] score of robust z-scores (before smoothing): z_mid maps to 0.5."""
    return 1.0 / (
        1.0 + np.exp(-np.clip((np.asarray(z, dtype=np.float64) - config.z_mid) / config.z_width, -50, 50))
    )


class CameraScorer:
    """Causal score normalization and smoothing for one camera (one video in eval).

    A model's camera (with a calibration) learns its statistics from the frames that are not outliers of
    them (ScorerConfig.learn_below_z); the motion baseline, which has no calibration to start from, from
    every frame."""

    def __init__(self, calibration: ScoreCalibration | None, config: ScorerConfig | None = None) -> None:
        self.calibration = calibration
        self.config = config or ScorerConfig()
        self.recent_raw: deque[float] = deque(maxlen=self.config.window)
        self.recent_scores: deque[float] = deque(maxlen=self.config.smoothing)
        self.outlier_excess = 0
        self.learned_last = False  # whether the newest frame's raw score entered the statistics

    def _statistics(self) -> tuple[float, float]:
        n = len(self.recent_raw)
        if n == 0 and self.calibration is None:
            return 0.0, 1.0
        if n:
            values = np.fromiter(self.recent_raw, dtype=np.float64, count=n)
            median = float(np.median(values))
            scale = float(1.4826 * np.median(np.abs(values - median)))
        if self.calibration is None:
            return median, max(scale, 1e-6)
        if n == 0:
            return self.calibration.median, self.calibration.scale
        weight = self.config.prior_weight / (self.config.prior_weight + n)
        return (
            weight * self.calibration.median + (1 - weight) * median,
            max(weight * self.calibration.scale + (1 - weight) * scale, 1e-6),
        )

    def normalize(self, raw: float) -> float:
        """The newest frame's robust z-score under the camera's statistics so far; then remember it, unless
        it is an outlier of them."""
        median, scale = self._statistics()
        z = (raw - median) / scale
        outlier = self.calibration is not None and z >= self.config.learn_below_z
        self.outlier_excess = max(0, self.outlier_excess + (1 if outlier else -1))
        self.learned_last = not outlier or self.outlier_excess >= self.config.relearn_after
        if self.learned_last:
            self.recent_raw.append(float(raw))
        # the level is added after the camera's own statistics are blended in: they do not pull it away
        return z + (self.calibration.level if self.calibration is not None else 0.0)

    def update(self, raw: float) -> float:
        """Normalized, smoothed score of the newest frame (its raw score remembered as normalize says)."""
        score = float(score_of_z(np.float64(self.normalize(raw)), self.config))
        self.recent_scores.append(score)
        return float(sum(self.recent_scores) / len(self.recent_scores))

    def set_rate(self, fps: float) -> None:
        """Smooths over SMOOTHING_S at `fps` from now on (a camera whose rate changed), the newest scores
        kept."""
        self.config = self.config.at_rate(fps)
        self.recent_scores = deque(self.recent_scores, maxlen=self.config.smoothing)

    def carried_to(self, calibration: ScoreCalibration | None) -> CameraScorer:
        """A scorer for another model that goes on from this camera's statistics: the raw scores it
        remembers, re-expressed in the other model's raw units through both calibrations (the same robust
        z on normal footage), and the smoothing's recent scores. A swap then keeps what the camera taught
        its scorer instead of starting again from the calibration alone. Without a calibration on either
        side (the motion baseline) the scales share nothing: a fresh scorer."""
        carried = CameraScorer(calibration, self.config)
        if self.calibration is None or calibration is None:
            return carried
        z = (
            np.fromiter(self.recent_raw, dtype=np.float64) - self.calibration.median
        ) / self.calibration.scale
        carried.recent_raw.extend((calibration.median + z * calibration.scale).tolist())
        carried.recent_scores.extend(self.recent_scores)
        carried.outlier_excess = self.outlier_excess
        return carried

    def state_dict(self) -> dict[str, Any]:
        return {
            "recent_raw": list(self.recent_raw),
            "recent_scores": list(self.recent_scores),
            "outlier_excess": self.outlier_excess,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.recent_raw.clear()
        self.recent_raw.extend(state.get("recent_raw", []))
        self.recent_scores.clear()
        self.recent_scores.extend(state.get("recent_scores", []))
        self.outlier_excess = int(state.get("outlier_excess", 0))
