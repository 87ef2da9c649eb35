"""From the detector's evidence maps to frame scores: the one definition shared by `vigil eval` and the service.

stream score = the largest mean evidence over any patch of a stream's map (localized evidence beats the
               frame mean), as a robust z-score against normal footage (the stream's statistics)
raw score    = the sum of the stream scores: each stream is an independent witness
score        = causal per-camera normalization of raw (robust running statistics), mapped to [0, 1]
               and smoothed over the last few frames. No future frame is ever looked at.
anomaly map  = per pixel, the sum over streams of the evidence above a normal frame's peak, in the same
               z units: what heatmaps show and what mining masks are drawn from.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np


def patch_max_scores(error_maps: np.ndarray, patch: int) -> np.ndarray:
    """Max over positions of the mean error in a patch x patch window; error_maps float32 [B, H, W]."""
    out = np.empty(len(error_maps), dtype=np.float32)
    for i, emap in enumerate(error_maps):
        size = (min(patch, emap.shape[1]), min(patch, emap.shape[0]))
        # borders are not padded: a window half outside the frame is not a patch
        out[i] = cv2.blur(emap, size, borderType=cv2.BORDER_REFLECT)[
            size[1] // 2 : emap.shape[0] - (size[1] - 1) // 2,
            size[0] // 2 : emap.shape[1] - (size[0] - 1) // 2,
        ].max()
    return out


def patch_size_for(height: int) -> int:
    """Scoring patch side for a view height: an eighth of it (16 px at 128), the scale of a person or a bike
    in a typical surveillance view; fixed to the view, not to a dataset."""
    return max(4, round(height / 8))


def ignore_mask(height: int, width: int, zones: list[list[tuple[float, float]]]) -> np.ndarray | None:
    """float32 [H, W]: 0 inside any ignore zone (polygons in normalized coordinates), 1 elsewhere."""
    if not zones:
        return None
    mask = np.ones((height, width), dtype=np.float32)
    for zone in zones:
        pts = np.array([[x * (width - 1), y * (height - 1)] for x, y in zone], dtype=np.int32)
        cv2.fillPoly(mask, [pts], 0.0)
    return mask


@dataclass(frozen=True)
class ScoreCalibration:
    """Median and robust spread of a score over normal footage: of each stream's patch scores (their
    z units), and of the raw frame score (the prior of a camera until it has statistics of its own)."""

    median: float
    scale: float  # robust spread: 1.4826 * MAD
    # the frame score's only: z added to every normalized score, the level at which the site's normal
    # footage scored when this model was swapped in (models/selftrain.refit_statistics); 0 for a fit
    level: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return {"median": self.median, "scale": self.scale, "level": self.level}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScoreCalibration:
        return cls(
            median=float(data["median"]), scale=float(data["scale"]), level=float(data.get("level", 0.0))
        )

    def z(self, raw: np.ndarray) -> np.ndarray:
        return (raw - self.median) / self.scale + self.level

    @classmethod
    def fit(cls, raw_scores: np.ndarray, min_scale: float = 0.0) -> ScoreCalibration:
        """From scores of normal footage; `min_scale`: a floor for the spread (of a bounded score that is
        nearly constant on normal footage, whose z units would otherwise be tiny)."""
        median = float(np.median(raw_scores))
        scale = float(1.4826 * np.median(np.abs(raw_scores - median)))
        return cls(median=median, scale=max(scale, min_scale, 1e-6))


IDENTITY = ScoreCalibration(0.0, 1.0)  # a stream without statistics (the motion baseline) scores as it is


def stream_patch_scores(maps: np.ndarray, patch: int) -> np.ndarray:
    """float32 [B, S]: patch-max score of every stream map; maps float32 [B, S, H, W]."""
    batch, streams = maps.shape[:2]
    return patch_max_scores(maps.reshape(batch * streams, *maps.shape[2:]), patch).reshape(batch, streams)


def combined_scores(patch_scores: np.ndarray, stats: list[ScoreCalibration]) -> np.ndarray:
    """float32 [B]: the raw frame score, the sum of the streams' z-scores; patch_scores [B, S]."""
    medians = np.array([s.median for s in stats], dtype=np.float32)
    scales = np.array([s.scale for s in stats], dtype=np.float32)
    return ((patch_scores - medians) / scales).sum(axis=1).astype(np.float32)


def anomaly_maps(maps: np.ndarray, stats: list[ScoreCalibration]) -> np.ndarray:
    """float32 [B, H, W]: evidence above a normal frame's peak, summed over streams in z units."""
    out = np.zeros((maps.shape[0], *maps.shape[2:]), dtype=np.float32)
    for index, stat in enumerate(stats):
        out += np.maximum(maps[:, index] - stat.median, 0.0) / stat.scale
    return out


@dataclass(frozen=True)
class ScorerConfig:
    window: int = 3000  # raw scores remembered per camera for its running statistics
    # the calibration counts as this many frames: a camera's own statistics take over only after minutes of
    # footage, so that a start full of activity is not learned as its normal level
    prior_weight: int = 1000
    z_mid: float = 4.0  # robust z-score that maps to 0.5
    z_width: float = 2.0  # wide enough that strong anomalies still rank among themselves
    smoothing: int = 5  # causal mean over the last N normalized scores


def score_of_z(z: np.ndarray, config: ScorerConfig) -> np.ndarray:
    """The [0, 1] score of robust z-scores (before smoothing): z_mid maps to 0.5."""
    return 1.0 / (
        1.0 + np.exp(-np.clip((np.asarray(z, dtype=np.float64) - config.z_mid) / config.z_width, -50, 50))
    )


class CameraScorer:
    """Causal score normalization and smoothing for one camera (one video in eval)."""

    def __init__(self, calibration: ScoreCalibration | None, config: ScorerConfig | None = None) -> None:
        self.calibration = calibration
        self.config = config or ScorerConfig()
        self.recent_raw: deque[float] = deque(maxlen=self.config.window)
        self.recent_scores: deque[float] = deque(maxlen=self.config.smoothing)

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
        """The newest frame's robust z-score under the camera's statistics so far; then remember it."""
        median, scale = self._statistics()
        self.recent_raw.append(float(raw))
        # the level is added after the camera's own statistics are blended in: they do not pull it away
        return (raw - median) / scale + (self.calibration.level if self.calibration is not None else 0.0)

    def update(self, raw: float) -> float:
        """Normalized, smoothed score of the newest frame; then remember its raw score."""
        score = float(score_of_z(np.float64(self.normalize(raw)), self.config))
        self.recent_scores.append(score)
        return float(sum(self.recent_scores) / len(self.recent_scores))

    def state_dict(self) -> dict[str, Any]:
        return {"recent_raw": list(self.recent_raw), "recent_scores": list(self.recent_scores)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.recent_raw.clear()
        self.recent_raw.extend(state.get("recent_raw", []))
        self.recent_scores.clear()
        self.recent_scores.extend(state.get("recent_scores", []))
