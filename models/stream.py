"""One camera's frame history and score state: the code path shared by `vigil eval` and the inference worker.

For each new frame: `clip = stream.push(frame, session)` gives the detector input (padding the history at
the start of a stream or after a reconnect), the detector turns a batch of clips into stream maps,
`raw_scores()` reduces them to frame scores, `anomaly_maps()` to the maps heatmaps and mining use, and
`stream.score(raw)` normalizes causally.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from models.detector import Detector, DetectorInfo
from models.scoring import (
    CameraScorer,
    ScoreCalibration,
    ScorerConfig,
    combined_scores,
    stream_patch_scores,
)
from models.scoring import anomaly_maps as stream_anomaly_maps


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

    def state_dict(self) -> dict[str, Any]:
        return {"session": self.session, "scorer": self.scorer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.session = None  # history frames are not persisted; a takeover refills them from the stream
        self.scorer.load_state_dict(state.get("scorer", {}))


def raw_scores(detector: Detector, maps: np.ndarray) -> np.ndarray:
    """float32 [B]: raw frame scores of stream maps [B, S, H, W] (ignore zones already masked out)."""
    return combined_scores(stream_patch_scores(maps, detector.info.patch), detector.info.stream_stats)


def anomaly_maps(detector: Detector, maps: np.ndarray) -> np.ndarray:
    """float32 [B, H, W]: where the frame is unlike normal footage, in z units above a normal frame's peak."""
    return stream_anomaly_maps(maps, detector.info.stream_stats)
