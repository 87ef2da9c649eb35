"""From the detector's evidence maps to frame scores: the one definition shared by `vigil eval` and the service.

stream score = the largest mean evidence over any patch of a stream's map (localized evidence beats the
               frame mean), as a robust z-score against normal footage (the stream's statistics). The
               motion stream's patches follow the view's perspective (`perspective_patches`): an object
               far away is small, and a patch the size of a near person would drown its evidence
raw score    = the sum of the stream scores: each stream is an independent witness
score        = causal per-camera normalization of raw (robust running statistics), mapped to [0, 1]
               and smoothed over the last few frames. No future frame is ever looked at.
anomaly map  = per pixel, the sum over streams of the evidence above a normal frame's peak, in the same
               z units: what heatmaps show and what mining masks are drawn from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

if TYPE_CHECKING:  # the detector's info carries the statistics these functions apply
    from models.detector.base import Detector


def patch_max_scores(error_maps: np.ndarray, patch: int | np.ndarray) -> np.ndarray:
    """Max over positions of the mean error in a patch x patch window; error_maps float32 [B, H, W].

    `patch`: one side for the whole view, or int [H] a side per row (the side of the windows centred on
    that row: `perspective_patches`)."""
    if not np.isscalar(patch):
        return _row_patch_max_scores(error_maps, np.asarray(patch))
    out = np.empty(len(error_maps), dtype=np.float32)
    for i, emap in enumerate(error_maps):
        size = (min(patch, emap.shape[1]), min(patch, emap.shape[0]))
        # borders are not padded: a window half outside the frame is not a patch
        out[i] = cv2.blur(emap, size, borderType=cv2.BORDER_REFLECT)[
            size[1] // 2 : emap.shape[0] - (size[1] - 1) // 2,
            size[0] // 2 : emap.shape[1] - (size[0] - 1) // 2,
        ].max()
    return out


def _row_patch_max_scores(error_maps: np.ndarray, sides: np.ndarray) -> np.ndarray:
    """patch_max_scores with a window side per row of its centre: each side blurs only the band of rows
    its windows cover, so that all sides together cost about two blurs of the map. The same windows as a
    fixed side where `sides` is constant."""
    batch, height, width = error_maps.shape
    if sides.shape != (height,):
        raise ValueError(f"patch sides per row of shape {sides.shape}: ({height},) needed")
    sides = np.clip(sides.astype(np.int64), 1, min(height, width))
    bands = []  # (side, first row of the band, rows of the band whose windows are scored)
    for side in np.unique(sides):
        tops = np.flatnonzero(sides == side) - side // 2  # windows centred on those rows, inside the frame
        tops = tops[(tops >= 0) & (tops + side <= height)]
        if len(tops):
            bands.append((int(side), int(tops[0]), tops - tops[0] + side // 2, int(tops[-1]) + side))
    if not bands:  # no row has a window inside the frame: the smallest side everywhere
        return patch_max_scores(error_maps, int(sides.min()))
    out = np.empty(batch, dtype=np.float32)
    for i, emap in enumerate(error_maps):
        best = -np.inf
        for side, first, centres, end in bands:
            blurred = cv2.blur(emap[first:end], (side, side), borderType=cv2.BORDER_REFLECT)
            best = max(best, float(blurred[centres, side // 2 : width - (side - 1) // 2].max()))
        out[i] = best
    return out


def patch_size_for(height: int) -> int:
    """Scoring patch side for a view height: an eighth of it (16 px at 128), the scale of a person or a bike
    in a typical surveillance view; fixed to the view, not to a dataset."""
    return max(4, round(height / 8))


def perspective_patches(patch: int, row_scale: list[float] | np.ndarray) -> np.ndarray:
    """int [H]: the patch side of each row, `patch` where things look largest in the view, smaller where
    they look smaller; `row_scale` [H] is the apparent size of things on each row relative to that place
    (models/detector/streams.py: fit_row_scale, from how fast normal footage moves there). Sizes go in steps of a
    quarter octave (19%): a few distinct sides, each blurred once (`patch_max_scores`)."""
    scale = np.clip(np.asarray(row_scale, dtype=np.float64), 1e-3, 1.0)
    steps = np.exp2(np.round(4 * np.log2(scale)) / 4)
    return np.maximum(4, np.round(patch * steps)).astype(np.int64)


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
    # footage scored when this model was swapped in (models/selftrain/adaptation.refit_statistics); 0 for a fit
    level: float = 0.0
    # a stream's only, where set: the z units its score must pass before it counts, and it counts by how far
    # it passed them (a stream that speaks only when sure: models/detector/place.py); None: every z counts
    gate: float | None = None

    def to_dict(self) -> dict[str, float]:
        out = {"median": self.median, "scale": self.scale, "level": self.level}
        return out if self.gate is None else {**out, "gate": self.gate}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScoreCalibration:
        gate = data.get("gate")
        return cls(
            median=float(data["median"]),
            scale=float(data["scale"]),
            level=float(data.get("level", 0.0)),
            gate=None if gate is None else float(gate),
        )

    def z(self, raw: np.ndarray) -> np.ndarray:
        return (raw - self.median) / self.scale + self.level

    @classmethod
    def fit(
        cls, raw_scores: np.ndarray, min_scale: float = 0.0, gate: float | None = None
    ) -> ScoreCalibration:
        """From scores of normal footage; `min_scale`: a floor for the spread (of a bounded score that is
        nearly constant on normal footage, whose z units would otherwise be tiny); `gate`: see the field."""
        median = float(np.median(raw_scores))
        scale = float(1.4826 * np.median(np.abs(raw_scores - median)))
        return cls(median=median, scale=max(scale, min_scale, 1e-6), gate=gate)


IDENTITY = ScoreCalibration(0.0, 1.0)  # a stream without statistics (the motion baseline) scores as it is


def stream_patch_scores(maps: np.ndarray, patch: int | list[int | np.ndarray]) -> np.ndarray:
    """float32 [B, S]: patch-max score of every stream map; maps float32 [B, S, H, W]; `patch`: one side, or
    one per stream (a side, or sides per row: DetectorInfo.stream_patches)."""
    batch, streams = maps.shape[:2]
    if np.isscalar(patch):
        return patch_max_scores(maps.reshape(batch * streams, *maps.shape[2:]), patch).reshape(batch, streams)
    out = np.empty((batch, streams), dtype=np.float32)
    for index, side in enumerate(patch):
        out[:, index] = patch_max_scores(np.ascontiguousarray(maps[:, index]), side)
    return out


def combined_scores(patch_scores: np.ndarray, stats: list[ScoreCalibration]) -> np.ndarray:
    """float32 [B]: the raw frame score, the sum of the streams' z-scores (a gated stream's above its
    gate); patch_scores [B, S]."""
    medians = np.array([s.median for s in stats], dtype=np.float32)
    scales = np.array([s.scale for s in stats], dtype=np.float32)
    z = (patch_scores - medians) / scales
    for index, stat in enumerate(stats):
        if stat.gate is not None:
            z[:, index] = np.maximum(z[:, index] - stat.gate, 0.0)
    return z.sum(axis=1).astype(np.float32)


def combined_anomaly_maps(maps: np.ndarray, stats: list[ScoreCalibration]) -> np.ndarray:
    """float32 [B, H, W]: evidence above a normal frame's peak (a gated stream's above its gate), summed
    over streams in z units."""
    out = np.zeros((maps.shape[0], *maps.shape[2:]), dtype=np.float32)
    for index, stat in enumerate(stats):
        floor = stat.median + (stat.gate or 0.0) * stat.scale
        out += np.maximum(maps[:, index] - floor, 0.0) / stat.scale
    return out


def camera_groups(cameras: Sequence[str | None] | None, count: int) -> dict[str | None, np.ndarray]:
    """The items of a batch of `count` grouped by camera (`cameras`, one per item; None: all unnamed)."""
    if cameras is None:
        return {None: np.arange(count)}
    groups: dict[str | None, list[int]] = {}
    for index, camera in enumerate(cameras):
        groups.setdefault(camera, []).append(index)
    return {camera: np.array(items) for camera, items in groups.items()}


def camera_patch_scores(
    detector: Detector, maps: np.ndarray, cameras: Sequence[str | None] | None = None
) -> np.ndarray:
    """float32 [B, S]: stream_patch_scores of stream maps [B, S, H, W], each item with its camera's patches
    (`cameras`, one per item; None: all the site's; DetectorInfo.for_camera)."""
    out = np.empty(maps.shape[:2], dtype=np.float32)
    for camera, items in camera_groups(cameras, len(maps)).items():
        out[items] = stream_patch_scores(maps[items], detector.info.for_camera(camera).stream_patches)
    return out


def in_site_units(
    detector: Detector, patch: np.ndarray, cameras: Sequence[str | None] | None = None
) -> np.ndarray:
    """float32 [B, S]: patch scores of items scored as their cameras (camera_patch_scores) moved to the site's
    statistics: each stream's z under the site's is the one its camera's statistics give, so that what
    sums or gates patch scores with the site's statistics reads every camera alike."""
    out = np.array(patch, dtype=np.float32)
    site = detector.info.stream_stats
    for camera, items in camera_groups(cameras, len(patch)).items():
        own = detector.info.for_camera(camera).stream_stats
        for index, (theirs, ours) in enumerate(zip(own, site, strict=True)):
            out[items, index] = (
                ours.median + (patch[items, index] - theirs.median) * ours.scale / theirs.scale
            )
    return out


def raw_scores(
    detector: Detector, maps: np.ndarray, cameras: Sequence[str | None] | None = None
) -> np.ndarray:
    """float32 [B]: raw frame scores of stream maps [B, S, H, W] (ignore zones already masked out), each
    with its camera's patches and statistics (`cameras` as in camera_patch_scores)."""
    out = np.empty(len(maps), dtype=np.float32)
    for camera, items in camera_groups(cameras, len(maps)).items():
        info = detector.info.for_camera(camera)
        out[items] = combined_scores(stream_patch_scores(maps[items], info.stream_patches), info.stream_stats)
    return out


def anomaly_maps(
    detector: Detector, maps: np.ndarray, cameras: Sequence[str | None] | None = None
) -> np.ndarray:
    """float32 [B, H, W]: where the frame is unlike normal footage, in z units above a normal frame's peak,
    each with its camera's statistics (`cameras` as in raw_scores)."""
    out = np.empty((maps.shape[0], *maps.shape[2:]), dtype=np.float32)
    for camera, items in camera_groups(cameras, len(maps)).items():
        out[items] = combined_anomaly_maps(maps[items], detector.info.for_camera(camera).stream_stats)
    return out
