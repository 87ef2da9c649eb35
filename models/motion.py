"""Motion baseline: the absolute difference of consecutive frames. No learning; a floor to beat."""

from __future__ import annotations

import numpy as np

from models.detector import Detector, DetectorInfo


class FrameDifferenceDetector(Detector):
    def __init__(self, height: int, width: int) -> None:
        self.info = DetectorInfo(
            kind="motion-baseline", version="motion-baseline", height=height, width=width, history=1
        )

    def error_maps(self, clips: np.ndarray) -> np.ndarray:
        frames = clips[:, -2:].astype(np.float32) / 255.0
        return np.abs(frames[:, 1] - frames[:, 0])
