"""Each camera's own view within one site model: its normal speed, perspective, place map and statistics.

One model serves every camera of a site, and a site's cameras may look at different scenes (a gate, a
car park). The appearance memory is shared: it holds every scene's looks. What a view's motion means is
not: a camera high above a walkway sees a far walker at a quarter of a near one's speed, one level with
a lobby sees none of that perspective, and each moves where its own paths are. A model fitted to several
cameras' footage (models/detector/fitting.fit_detector with their names) therefore keeps, besides the
site's joined view in its graph, each camera's own: the optical flow its pixels call for, the normal speed
per pixel and the row scale (models/detector/streams.MotionStream), where things move
(models/detector/place.PlaceStream), every stream's patch statistics and the frame score's calibration, all
fitted to that camera's footage alone. The speed is measured outside the graph (models/detector/flow.py),
so a camera's speed is measured with its own flow and fed to the graph, its motion and place maps are made
here from it, with the same maths as the graph's streams, and its frames are scored with its own patches
and statistics. A camera the fit did not see is scored with the site's view.

Kept in the model's metadata ("camera_views"): float16 maps, compressed (about 0.3 MB a camera at
240x360).
"""

from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.detector.flow import FlowConfig
from models.detector.scores import ScoreCalibration

# the model metadata's key of the cameras' views
CAMERA_VIEWS = "camera_views"


def encode_map(values: np.ndarray) -> dict[str, Any]:
    """A float map as JSON: its shape and its float16 bytes, zlib-compressed, in base64."""
    half = np.ascontiguousarray(values, dtype=np.float16)
    return {"shape": list(half.shape), "float16": base64.b64encode(zlib.compress(half.tobytes())).decode()}


def decode_map(data: dict[str, Any]) -> np.ndarray:
    """float32: the map `encode_map` wrote."""
    raw = zlib.decompress(base64.b64decode(data["float16"]))
    return np.frombuffer(raw, dtype=np.float16).reshape(data["shape"]).astype(np.float32)


@dataclass(frozen=True)
class CameraView:
    normal_speed: np.ndarray  # float32 [H, W]: mean speed of the camera's normal footage
    row_scale: np.ndarray  # float32 [H]: apparent size of things per row (streams.fit_row_scale)
    rarity: np.ndarray | None  # float32 [H, W]: the place stream's map (place.rarity); None without it
    typical: float  # the typical row-scaled speed of what moves (place.typical_speed)
    stream_stats: dict[str, ScoreCalibration]
    calibration: ScoreCalibration
    # the flow the camera's own footage calls for (its pixels, its frame rate), where not the site's: a fit
    # takes the flow of its smallest camera's pixels for the site, which throws a larger camera's detail away
    flow: FlowConfig | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "normal_speed": encode_map(self.normal_speed),
            "typical": self.typical,
            **self.scoring_metadata(),
        }
        if self.rarity is not None:
            out["rarity"] = encode_map(self.rarity)
        if self.flow is not None:
            out["flow"] = self.flow.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CameraView:
        return cls(
            normal_speed=decode_map(data["normal_speed"]),
            row_scale=np.asarray(data["row_scale"], dtype=np.float32),
            rarity=decode_map(data["rarity"]) if "rarity" in data else None,
            typical=float(data["typical"]),
            stream_stats={
                name: ScoreCalibration.from_dict(stat) for name, stat in data["stream_stats"].items()
            },
            calibration=ScoreCalibration.from_dict(data["calibration"]),
            flow=FlowConfig.from_dict(data["flow"]) if "flow" in data else None,
        )

    def scoring_metadata(self) -> dict[str, Any]:
        """The metadata keys a model's scoring reads (DetectorInfo), as this view has them."""
        return {
            "stream_stats": {name: stat.to_dict() for name, stat in self.stream_stats.items()},
            "calibration": self.calibration.to_dict(),
            "row_scale": [round(float(v), 4) for v in self.row_scale],
        }

    def motion_map(self, speed: np.ndarray) -> np.ndarray:
        """float32 [B, H, W]: the motion stream's map of speed maps [B, H, W] (MotionStream.forward)."""
        return np.maximum(speed - self.normal_speed, 0.0) / self.row_scale[:, None]

    def place_map(self, speed: np.ndarray) -> np.ndarray:
        """float32 [B, H, W]: the place stream's map (DetectorNet.place_map, PlaceStream.forward)."""
        assert self.rarity is not None
        scaled = speed / self.row_scale[:, None] / self.typical
        return np.clip(scaled, 0.0, 1.0) * self.rarity


def parse_views(metadata: dict[str, Any]) -> dict[str, CameraView]:
    """The cameras' views a model's metadata holds (none for a model fitted to one camera's footage)."""
    return {camera: CameraView.from_dict(view) for camera, view in (metadata.get(CAMERA_VIEWS) or {}).items()}
