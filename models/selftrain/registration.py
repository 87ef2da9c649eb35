"""A camera that moved, registered again: the model's maps of the old view carried to the new one.

A knocked or re-aimed camera sees the same site zoomed, turned or shifted. Three of the model's parts
are maps of the view's pixels: the motion stream's normal speed and row scale, and the place map of where
things move. On the moved view they describe the wrong pixels (the place map pages on every walker);
silencing the map and waiting for a fresh fit to learn the new view's loses what the model knew of it.
Where the site is still in view, the maps are carried over instead: the affine map between the footage the
model was fitted to (the median of its anchor clips' last frames: the empty site, walkers taken out) and the
moved camera's (the median of the window's frames) is found by enhanced correlation coefficient
maximisation (Evangelidis and Psarakis, IEEE TPAMI 2008; OpenCV's findTransformECC), and each map, and the
anchor clips, are warped by it; speeds in pixels grow with the zoom. A view that no affine map explains
(upside down, another site) does not correlate: its place map is silenced (models/selftrain/trainer.py).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

from models.detector.streams import DetectorNet
from models.selftrain.config import SelfTrainConfig, Window
from models.selftrain.cycle import CycleResult, child_metadata

log = logging.getLogger(__name__)

# the least correlation of the two backgrounds once warped: the moved copies of both scenes (zoomed,
# shifted, re-lit, turned 8 degrees) register at 0.97-1.00, either scene's model on the other's footage at
# 0.64-0.81; a view upside down is not an affine map away (ECC does not converge)
BACKGROUND_CORRELATION = 0.9
# frames at each end of a window whose medians show the view (a cycle's window may reach back to before a
# move). Own test streams' 100-frame windows register within 0.95 px of their training footage, 200-frame
# ones within 0.91
BACKGROUND_FRAMES = 200
BACKGROUND_STRIDE = 5  # every n-th of them makes the background
ECC_ITERATIONS = 200
ECC_EPSILON = 1e-6
ECC_BLUR = 5  # Gaussian kernel ECC smooths both images with: the sensor's noise and the walkers' edges
# a move shorter than this at every corner of the view (pixels at the detector's size) is none: the
# backgrounds of 200-frame windows of both scenes' own test streams register within 0.91 px of their
# training footage's; the moved copies 20-39 px away
MIN_MOVE_PX = 2.0
MAX_ZOOM_CHANGE = 2.0  # a warp that scales the view more than this (or less than its inverse) is no move


def view_background(frames: np.ndarray) -> np.ndarray:
    """float32 [H, W]: the site with what moves taken out, the median of frames [N, H, W]."""
    return np.median(np.asarray(frames, dtype=np.float32), axis=0).astype(np.float32)


def warp_zoom(warp: np.ndarray) -> float:
    """How much larger things look after the 2x3 affine `warp` (the square root of its area ratio)."""
    return float(np.sqrt(abs(np.linalg.det(np.asarray(warp, dtype=np.float64)[:, :2]))))


def view_warp(reference: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, float] | None:
    """The 2x3 affine map of `reference`'s pixel coordinates to `current`'s (float32 images of one size) and
    the correlation of the two once warped; None where ECC does not converge or the map is no camera move
    (its zoom out of [1 / MAX_ZOOM_CHANGE, MAX_ZOOM_CHANGE])."""
    warp = np.eye(2, 3, dtype=np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, ECC_ITERATIONS, ECC_EPSILON)
    try:
        correlation, warp = cv2.findTransformECC(
            reference.astype(np.float32),
            current.astype(np.float32),
            warp,
            cv2.MOTION_AFFINE,
            criteria,
            None,
            ECC_BLUR,
        )
    except cv2.error:  # no convergence, or images without texture
        return None
    zoom = warp_zoom(warp)
    if not np.isfinite(warp).all() or not 1 / MAX_ZOOM_CHANGE <= zoom <= MAX_ZOOM_CHANGE:
        return None
    return warp, float(correlation)


def warped_map(values: np.ndarray, warp: np.ndarray) -> np.ndarray:
    """float32 [H, W]: a map of the reference view's pixels [H, W] carried to the view `warp` maps them to;
    pixels that were out of the old view take the nearest edge's value."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    height, width = values.shape
    return cv2.warpAffine(
        values, warp, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def warped_row_scale(row_scale: np.ndarray, warp: np.ndarray, width: int) -> np.ndarray:
    """float32 [H] in (0, 1]: the apparent size of things on each row of the new view, from the old view's
    per row (models/detector/streams.fit_row_scale), carried by `warp` and rescaled to peak at 1."""
    rows = np.repeat(np.asarray(row_scale, dtype=np.float32).reshape(-1, 1), width, axis=1)
    carried = warped_map(rows, warp).mean(axis=1)
    return (carried / max(float(carried.max()), 1e-6)).astype(np.float32)


def registered_model(
    model: DetectorNet, metadata: dict[str, Any], warp: np.ndarray
) -> tuple[DetectorNet, dict[str, Any]]:
    """A copy of `model` whose maps of the view are carried by `warp` (reference to current pixels), and its
    metadata's row scale with them; the appearance memory and the statistics are the model's."""
    registered = copy.deepcopy(model).eval()
    zoom = warp_zoom(warp)
    width = model.config.width
    updated = dict(metadata)
    if registered.motion is not None:
        speed = warped_map(registered.motion.normal_speed.numpy(), warp) * zoom
        registered.motion.normal_speed.copy_(torch.from_numpy(speed))
        row_scale = warped_row_scale(registered.motion.row_scale.numpy()[:, 0], warp, width)
        registered.motion.row_scale.copy_(torch.from_numpy(row_scale)[:, None])
        if "row_scale" in updated:
            updated["row_scale"] = [round(float(v), 4) for v in row_scale]
    if registered.place is not None:
        registered.place.rarity.copy_(torch.from_numpy(warped_map(registered.place.rarity.numpy(), warp)))
    if registered.anchors is not None:
        anchors = registered.anchors
        flat = anchors.reshape(-1, *anchors.shape[-2:])
        carried = np.stack([warped_map(frame, warp) for frame in flat])
        registered.anchors = carried.round().clip(0, 255).astype(np.uint8).reshape(anchors.shape)
    return registered, updated


def anchor_background(model: DetectorNet) -> np.ndarray | None:
    """The background of the footage `model` was fitted to (its anchor clips' last frames), None without."""
    if model.anchors is None or len(model.anchors) == 0:
        return None
    return view_background(model.anchors[:, -1])


def corner_distance(first: np.ndarray, second: np.ndarray, height: int, width: int) -> float:
    """How far apart (pixels) two 2x3 affine maps put the corner of a view of height x width pixels that they
    put farthest apart; from the identity, how far a move takes the view's farthest-moved corner."""
    corners = np.array([[0, 0, 1], [width - 1, 0, 1], [0, height - 1, 1], [width - 1, height - 1, 1]], float)
    apart = corners @ (np.asarray(first, dtype=np.float64) - np.asarray(second, dtype=np.float64)).T
    return float(np.abs(apart).max())


@dataclass(frozen=True)
class ViewMove:
    """How the camera's view moved since the footage a model was fitted to."""

    warp: np.ndarray  # 2x3 affine map of the model's view's pixels to the camera's
    correlation: float  # of the two backgrounds once warped (the lower of the window's two ends)
    shift: float  # pixels the farthest corner moved

    def report(self) -> dict[str, Any]:
        """What a cycle's report and the model's metadata say of the move."""
        return {
            "zoom": round(warp_zoom(self.warp), 4),
            "turned_degrees": round(float(np.degrees(np.arctan2(-self.warp[0, 1], self.warp[0, 0]))), 2),
            "corner_shift_px": round(self.shift, 2),
            "correlation": round(self.correlation, 4),
        }


def view_move(model: DetectorNet, window: Window) -> ViewMove | None:
    """How the view of `window` moved from the one `model` was fitted to; None where that is not known: no
    anchor clips, or no affine map registers both the window's oldest and newest BACKGROUND_FRAMES frames
    (its halves, where shorter) by one move (correlation under BACKGROUND_CORRELATION, or moves more than
    MIN_MOVE_PX apart). Both ends must agree: several cameras' windows joined, or a camera that moved
    within the window, register at one end only."""
    reference = anchor_background(model)
    if reference is None:
        return None
    count = min(BACKGROUND_FRAMES, len(window) // 2)  # the ends of a short window are its halves
    if count == 0:
        return None
    ends = (window.frames[:count], window.frames[-count:])
    found = [view_warp(reference, view_background(frames[::BACKGROUND_STRIDE])) for frames in ends]
    if any(f is None or f[1] < BACKGROUND_CORRELATION for f in found):
        return None
    (oldest, low), (newest, high) = found  # type: ignore[misc]
    height, width = reference.shape
    if corner_distance(oldest, newest, height, width) > MIN_MOVE_PX:
        return None
    return ViewMove(newest, min(low, high), corner_distance(newest, np.eye(2, 3), height, width))


def registered_view(
    model: DetectorNet, metadata: dict[str, Any], move: ViewMove, config: SelfTrainConfig
) -> CycleResult:
    """The model with its maps of the view carried by `move`, and nothing else changed."""
    registered, carried = registered_model(model, metadata, move.warp)
    report = move.report()
    child = child_metadata(registered, carried, {"config": config.to_dict(), "registered": report})
    reason = (
        f"the view moved ({report['corner_shift_px']:.0f} px at a corner; zoom {report['zoom']:.3f}, turned "
        f"{report['turned_degrees']:.1f} degrees): its maps carried to it (correlation {move.correlation:.3f})"
    )
    log.info("%s", reason)
    return CycleResult(True, reason, {"registered": report}, registered, child)
