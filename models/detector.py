"""The detector interface shared by every network, the baselines, eval and the inference worker."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class DetectorInfo:
    kind: str  # e.g. "motion-baseline", "unet-predictor"
    version: str
    height: int  # analysis frame size the detector expects
    width: int
    history: int  # past frames needed besides the current one
    metadata: dict[str, Any] = field(default_factory=dict)


class Detector(ABC):
    """Maps short clips of grayscale frames to pixel error maps of their last frame."""

    info: DetectorInfo

    @abstractmethod
    def error_maps(self, clips: np.ndarray) -> np.ndarray:
        """clips: uint8 [B, history + 1, H, W], oldest first, the frame to score last.

        Returns float32 [B, H, W]: per-pixel anomaly evidence for the last frame (0 = normal).
        """
