"""The detector interface shared by every network, the baselines, eval and the inference worker."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np

from models.detector.scores import IDENTITY, ScoreCalibration, patch_size_for, perspective_patches
from models.detector.views import CameraView, parse_views

# the streams whose evidence is the flow's: scored in patches that follow the view's perspective
MOTION_STREAMS = ("motion", "place")
# a stream that reads another stream's evidence: the one it needs, and why
STREAM_NEEDS = {
    "place": ("motion", "the place stream counts motion in the motion stream's units"),
    "ordinal": ("appearance", "the ordinal stream scores the appearance stream's features"),
}
# the model metadata's list of the cameras whose view its place map no longer knows (one camera of several
# moved, models/selftrain/cycle.silenced_place): their place evidence is taken out before scoring
PLACE_SILENCED_CAMERAS = "place_silenced_cameras"


def missing_stream(streams: list[str] | tuple[str, ...]) -> str | None:
    """Why `streams` cannot run together (a stream without the one whose evidence it reads), else None.
    The detector's config and the settings check the same."""
    for name, (needed, why) in STREAM_NEEDS.items():
        if name in streams and needed not in streams:
            return f"{why}: add {needed}"
    return None


@dataclass(frozen=True)
class DetectorInfo:
    kind: str  # e.g. "motion-baseline", "flow-appearance"
    version: str
    height: int  # analysis frame size the detector expects
    width: int
    history: int  # past frames needed besides the current one
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def streams(self) -> list[str]:
        """The evidence streams, in the order of the detector's maps."""
        return list(self.metadata.get("streams") or ["motion"])

    @property
    def stream_stats(self) -> list[ScoreCalibration]:
        """Each stream's patch-score statistics on normal footage (identity where there are none)."""
        stats = self.metadata.get("stream_stats") or {}
        return [
            ScoreCalibration.from_dict(stats[name]) if name in stats else IDENTITY for name in self.streams
        ]

    @cached_property
    def camera_views(self) -> dict[str, CameraView]:
        """The cameras whose own view the model keeps (models/detector/views.py): none for most models."""
        return parse_views(self.metadata)

    def for_camera(self, camera: str | None) -> DetectorInfo:
        """The model as it scores `camera`'s frames: with the camera's own statistics, calibration and
        perspective where the model keeps its view, else itself."""
        view = self.camera_views.get(camera) if camera is not None else None
        if view is None:
            return self
        return self._camera_infos.setdefault(
            camera, replace(self, metadata={**self.metadata, **view.scoring_metadata()})
        )

    @cached_property
    def _camera_infos(self) -> dict[str, DetectorInfo]:
        return {}

    @property
    def place_silenced_cameras(self) -> frozenset[str]:
        """The cameras whose place evidence is taken out (`silence_place`): none for most models."""
        return frozenset(self.metadata.get(PLACE_SILENCED_CAMERAS) or ())

    def silence_place(self, maps: np.ndarray, cameras: Sequence[str | None]) -> np.ndarray:
        """`maps` [B, S, H, W] with the place stream's evidence zeroed, in place, for each item whose camera
        (`cameras`, one per item; None: unknown) is one the map no longer knows; the model's map goes on
        scoring the others."""
        silenced = self.place_silenced_cameras
        if silenced and "place" in self.streams:
            place = self.streams.index("place")
            for index, camera in enumerate(cameras):
                if camera in silenced:
                    maps[index, place] = 0.0
        return maps

    @property
    def patch(self) -> int:
        return int(self.metadata.get("patch") or patch_size_for(self.height))

    @property
    def stream_patches(self) -> list[int | np.ndarray]:
        """Each stream's scoring patch: `patch`, or for the streams of motion (motion, place) of a model fitted
        with the view's row scale (metadata "row_scale"), a side per row that follows the perspective."""
        row_scale = self.metadata.get("row_scale")
        return [
            perspective_patches(self.patch, row_scale) if name in MOTION_STREAMS and row_scale else self.patch
            for name in self.streams
        ]


class Detector(ABC):
    """Maps short clips of grayscale frames to evidence maps of their last frame, one per stream."""

    info: DetectorInfo

    @abstractmethod
    def stream_maps(self, clips: np.ndarray) -> np.ndarray:
        """clips: uint8 [B, history + 1, H, W], oldest first, the frame to score last.

        Returns float32 [B, S, H, W]: per-pixel anomaly evidence of each stream for the last frame
        (0 = none, larger = less like normal footage).
        """

    def served_maps(self, clips: np.ndarray, cameras: Sequence[str | None]) -> np.ndarray:
        """`stream_maps` of clips as the service scores each one's camera (`cameras`, one per clip; None:
        unknown): without place evidence where the model's map no longer knows that camera's view (a
        learned detector also makes a camera's motion maps in its own view: runtime.FlowDetector)."""
        return self.info.silence_place(self.stream_maps(clips), cameras)
