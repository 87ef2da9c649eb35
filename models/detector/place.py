"""The place stream: motion where the site's normal footage rarely moves.

A person walking across a lawn, into a flower bed or along a rail track moves like every walker: the
motion stream, which asks how much faster than normal a pixel moves, and the appearance stream, which
asks whether a cell looks like the site's footage, both let it pass. What is unusual is where it moves.
The stream counts, per pixel, the share of normal frames in which something moved there, and scores a
frame's motion by how rare motion is at its place: -log10 of that share (the per-location motion statistics
of Adam, Rivlin, Shimshoni and Reinitz's fixed-location monitors, IEEE TPAMI 2008, reduced to how often
anything moves there).

Speeds are taken in units of the view's row scale (models/detector/streams.fit_row_scale), as the motion
stream takes them, so that a far walker counts as moving as a near one does. A pixel moves when its speed
is over MOVING_FRACTION of the typical speed of what moves in the footage (sum(u^2) / sum(u) of the
row-scaled speeds); the evidence of a moving pixel grows with its speed up to the typical one, so that
flow noise at a rare place is not evidence.

Every walkway has rare corners, so the stream only speaks where a frame's place evidence is far beyond
normal footage's (GATE_Z robust spreads, cross-fitted: the counts never score the frames they came
from), and then by how much: ScoreCalibration.gate.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import nn

# chosen on UCSD Ped1 and Ped2 together (the README's "A person where nobody walks"): at 0.2-0.3 of the
# typical speed, spreads of 6-18 px at 240 rows and a gate of 6 spreads, every setting gave the same alerts
MOVING_FRACTION = 0.2
GATE_Z = 6.0


def typical_speed(row_sum: np.ndarray, row_squares: np.ndarray, row_scale: np.ndarray) -> float:
    """The typical row-scaled speed of what moves, sum(u^2) / sum(u) with u = speed / row scale, from the
    footage's speeds summed per row (`row_sum`) and their squares summed per row; 1 without motion."""
    scale = np.asarray(row_scale, dtype=np.float64)
    units = float((np.asarray(row_sum, dtype=np.float64) / scale).sum())
    squares = float((np.asarray(row_squares, dtype=np.float64) / np.square(scale)).sum())
    return squares / units if units > 0 else 1.0


def moving_counts(speed: np.ndarray, row_scale: np.ndarray, typical: float) -> np.ndarray:
    """float64 [H, W]: in how many of the speed maps (float32 [B, H, W]) each pixel moved."""
    threshold = MOVING_FRACTION * typical * np.asarray(row_scale, dtype=np.float32)[:, None]
    return (speed > threshold[None]).sum(axis=0, dtype=np.float64)


def place_blur(height: int) -> int:
    """The side of the box that spreads a pixel's counts over its place: a third of the scoring patch of the
    view (a person near the camera), made odd: 11 px at 240 rows; at least 1."""
    side = max(1, round(height / 24))
    return side if side % 2 else side + 1


def rarity(counts: np.ndarray, frames: int, blur: int) -> np.ndarray:
    """float32 [H, W]: -log10 of the share of `frames` normal frames in which something moved at each
    place (`counts` spread over a `blur` box; one moving and one still frame added, so that a place never
    seen moving is rare, not infinitely so)."""
    spread = cv2.blur(np.asarray(counts, dtype=np.float64), (blur, blur)) if blur > 1 else counts
    return (-np.log10((spread + 1.0) / (frames + 2.0))).astype(np.float32)


class PlaceStream(nn.Module):
    """Row-scaled speed [B, H, W] -> how rare motion is where it moves: min(speed / typical, 1) times the
    place's rarity (zeros until fitted)."""

    def __init__(self, height: int, width: int) -> None:
        super().__init__()
        self.register_buffer("rarity", torch.zeros(height, width))
        self.register_buffer("typical", torch.ones(()))

    def fit(self, rarity_map: np.ndarray, typical: float) -> None:
        self.rarity.copy_(torch.from_numpy(np.asarray(rarity_map, dtype=np.float32)))
        self.typical.fill_(float(typical))

    def forward(self, scaled_speed: torch.Tensor) -> torch.Tensor:
        return (scaled_speed / self.typical).clamp(min=0.0, max=1.0) * self.rarity
