"""Motion baseline: optical-flow speed, nothing learned. What a site is scored with before it has a model."""

from __future__ import annotations

import numpy as np

from models.detector.base import Detector, DetectorInfo
from models.detector.flow import FlowConfig, clip_speeds


class MotionBaseline(Detector):
    def __init__(self, height: int, width: int, flow: FlowConfig | None = None) -> None:
        self.flow = flow or FlowConfig()
        self.info = DetectorInfo(
            kind="motion-baseline",
            version="motion-baseline",
            height=height,
            width=width,
            history=self.flow.gap,
            metadata={"streams": ["motion"]},
        )

    def stream_maps(self, clips: np.ndarray) -> np.ndarray:
        return clip_speeds(clips, self.flow)[:, None]
