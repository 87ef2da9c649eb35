"""Frames an operator labelled normal, learned as normal at once, whatever the mining makes of them.

A cycle's mining offers the appearance memory a sample of cells from evenly spread frames, and its normal
speed is a mean over thousands of frames: a false alert the operator marks normal would mostly survive
it. Here the labelled frames are learned directly, the way the fit learns normal footage:

- appearance: the frames' cells that the memory covers worst join it (the k-center coreset continued,
  models/detector/fitting.extend_coreset), until every labelled cell is within the memory's own typical
  reach or `max_cells` were added; what the memory covered stays;
- motion (optional, `motion_exception`): where the labelled frames moved fastest above normal (their
  hot spots, not everywhere someone walked), the normal speed raised to the speed seen there (spread by
  `motion_spread` pixels, times `motion_margin`), so that the same motion at the same place is no longer
  faster than normal, while faster motion there, or motion anywhere else, scores as before.

The statistics (the streams' z units, the calibration) are left as they are: a labelled false alert
scores lower, normal footage scores as it did, and the alert threshold keeps its meaning.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch

from models.detector.fitting import BATCH, extend_coreset, frame_features
from models.detector.flow import clip_speeds
from models.detector.streams import DetectorNet
from models.selftrain.config import LabelLearning


def _memory_spacing(cells: torch.Tensor, quantile: float) -> float:
    """The `quantile` of the distances from each remembered cell to its nearest other one."""
    distances = torch.cdist(cells, cells)
    distances.fill_diagonal_(float("inf"))
    return float(torch.quantile(distances.amin(1), quantile))


def learn_appearance(model: DetectorNet, frames: np.ndarray, config: LabelLearning) -> int:
    """Adds the worst-covered cells of `frames` (uint8 [N, H, W]) to the memory; returns how many."""
    appearance = model.appearance
    assert appearance is not None
    current = appearance.cells.clone()
    features = frame_features(model, frames).float()
    pool = features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])
    reach = _memory_spacing(current, config.reach_quantile)
    grown = extend_coreset(current, pool, config.max_cells, within=reach)
    model.remember(grown)
    return len(grown) - len(current)


def learn_motion(model: DetectorNet, clips: np.ndarray, config: LabelLearning) -> float:
    """Raises the normal speed, where the labelled clips (uint8 [N, history + 1, H, W]) moved fastest
    above normal (at least `motion_peak_share` of each frame's peak), to the speed seen there; returns
    the share of pixels raised."""
    motion = model.motion
    assert motion is not None
    seen = np.zeros(tuple(motion.normal_speed.shape), dtype=np.float32)
    for start in range(0, len(clips), BATCH):
        speed = clip_speeds(clips[start : start + BATCH], model.config.flow)
        with torch.inference_mode():
            above = motion(torch.from_numpy(speed)).numpy()  # speed above normal, per row scale
        peaks = above.reshape(len(above), -1).max(1)[:, None, None]
        hot = (above > 0) & (above >= config.motion_peak_share * peaks)
        seen = np.maximum(seen, np.where(hot, speed, 0.0).max(0))
    kernel = np.ones((config.motion_spread, config.motion_spread), np.uint8)
    seen = cv2.dilate(seen, kernel) * config.motion_margin
    old = motion.normal_speed.numpy()
    raised = seen > old
    motion.normal_speed.copy_(torch.from_numpy(np.maximum(old, seen)))
    return float(raised.mean())


def learn_labelled_normal(model: DetectorNet, clips: np.ndarray, config: LabelLearning) -> dict[str, Any]:
    """Learns clips (uint8 [N, history + 1, H, W], each a labelled frame with its past) as normal, in
    place; returns what changed."""
    if len(clips) > config.max_frames:  # labelled runs are of near-identical frames
        clips = clips[np.linspace(0, len(clips) - 1, config.max_frames).round().astype(int)]
    report: dict[str, Any] = {"frames": len(clips)}
    if len(clips) == 0:
        return report
    if model.appearance is not None:
        report["cells_added"] = learn_appearance(model, clips[:, -1], config)
    if model.motion is not None and config.motion_exception:
        report["motion_pixels_raised"] = round(learn_motion(model, clips, config), 4)
    return report
