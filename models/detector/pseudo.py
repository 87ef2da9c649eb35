"""Training clips, including the pseudo anomalies the predictor must not reproduce.

Following *Learning Not to Reconstruct Anomalies* (Astrid, Zaheer, Lee and Lee, BMVC 2021), a pseudo-anomalous input is paired with the NORMAL
target, so the network learns to predict normal content whatever it is shown:
- skip-frame: the past frames are taken every s-th frame (motion s times too fast); the target is the
  frame that follows the last past frame at normal speed.
- patch: a foreign textured patch with soft edges moves through the past frames; the target is the
  untouched current frame, so the network learns to predict the background where an unknown thing was.
- stream start: the oldest past frames are replaced by the first available one, exactly as CameraStream
  pads the history after a (re)connect, so padded clips are scored on the same scale as full ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np


@dataclass(frozen=True)
class PseudoAnomalyConfig:
    skip_probability: float = 0.1
    patch_probability: float = 0.1
    padding_probability: float = 0.05
    max_skip: int = 4

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def padded_indices(t: int, history: int, step: int = 1) -> list[int]:
    """Frame indices of the clip ending at t; missing past frames repeat the first one (as CameraStream)."""
    return [max(t - step * k, 0) for k in range(history, 0, -1)] + [t]


class ClipSampler:
    """Draws training clips [history + 1, H, W] uint8 from normal videos, some made pseudo-anomalous."""

    def __init__(
        self, videos: list[np.ndarray], history: int, config: PseudoAnomalyConfig, rng: np.random.Generator
    ) -> None:
        self.videos = videos
        self.history = history
        self.config = config
        self.rng = rng
        self.index = [(v, t) for v, frames in enumerate(videos) for t in range(len(frames))]

    def __len__(self) -> int:
        return len(self.index)

    def batch(
        self, size: int, crop: tuple[int, int] | None = None
    ) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """`size` clips, cut to `crop` (height, width) at random places when given; with their (top, left)."""
        picks = self.rng.integers(0, len(self.index), size)
        clips = [self.clip(*self.index[i]) for i in picks]
        if crop is None:
            return np.stack(clips), [(0, 0)] * size
        height, width = clips[0].shape[1:]
        offsets = [
            (int(self.rng.integers(0, height - crop[0] + 1)), int(self.rng.integers(0, width - crop[1] + 1)))
            for _ in clips
        ]
        return np.stack(
            [c[:, y : y + crop[0], x : x + crop[1]] for c, (y, x) in zip(clips, offsets, strict=True)]
        ), offsets

    def clip(self, video: int, t: int) -> np.ndarray:
        frames = self.videos[video]
        draw = self.rng.random()
        if draw < self.config.skip_probability and t >= self.history:
            step = int(self.rng.integers(2, self.config.max_skip + 1))
            past = padded_indices(t, self.history, step)[:-1]
            return frames[[*past, min(past[-1] + 1, len(frames) - 1)]]
        clip = frames[padded_indices(t, self.history)].copy()
        draw -= self.config.skip_probability
        if draw < self.config.patch_probability:
            self.paste_patch(clip)
        elif draw - self.config.patch_probability < self.config.padding_probability:
            keep = int(self.rng.integers(1, self.history + 1))  # past frames seen since the (re)connect
            clip[: self.history - keep + 1] = clip[self.history - keep]
        return clip

    def paste_patch(self, clip: np.ndarray, include_current: bool = False) -> tuple[int, int, int, int]:
        """A foreign patch moving through the past frames (clip[:-1]), the current frame staying normal (a
        training input whose target is normal), or through every frame (a test anomaly). Returns the
        patch's box (top, left, height, width) in the last frame it was pasted into."""
        height, width = clip.shape[1:]
        rng = self.rng
        ph = int(rng.integers(height // 8, height // 3 + 1))
        pw = int(rng.integers(width // 12, width // 4 + 1))
        source = self.videos[int(rng.integers(len(self.videos)))]
        frame = source[int(rng.integers(len(source)))]
        patch = self._foreign_texture(frame, ph, pw)
        mask = np.zeros((ph, pw), np.float32)
        cv2.ellipse(mask, (pw // 2, ph // 2), (max(pw // 2 - 1, 1), max(ph // 2 - 1, 1)), 0, 0, 360, 1.0, -1)
        mask = cv2.GaussianBlur(mask, (0, 0), max(min(ph, pw) / 8, 0.5))
        speed = rng.uniform(0.0, 4.0, size=2) * rng.choice([-1, 1], size=2)  # pixels per frame (y, x)
        y0 = rng.uniform(0, height - ph)
        x0 = rng.uniform(0, width - pw)
        for k in range(len(clip) if include_current else len(clip) - 1):
            y = int(np.clip(y0 + speed[0] * k, 0, height - ph))
            x = int(np.clip(x0 + speed[1] * k, 0, width - pw))
            region = clip[k, y : y + ph, x : x + pw].astype(np.float32)
            clip[k, y : y + ph, x : x + pw] = (mask * patch + (1 - mask) * region).astype(np.uint8)
        return y, x, ph, pw

    def _foreign_texture(self, frame: np.ndarray, ph: int, pw: int) -> np.ndarray:
        """Scene content made unlike the scene: a crop rotated, rescaled and/or intensity-inverted."""
        rng = self.rng
        height, width = frame.shape
        ch = int(rng.integers(max(ph // 2, 4), height + 1))
        cw = int(rng.integers(max(pw // 2, 4), width + 1))
        y, x = int(rng.integers(0, height - ch + 1)), int(rng.integers(0, width - cw + 1))
        crop = np.rot90(frame[y : y + ch, x : x + cw], int(rng.integers(1, 4)))
        patch = cv2.resize(np.ascontiguousarray(crop), (pw, ph), interpolation=cv2.INTER_LINEAR).astype(
            np.float32
        )
        if rng.random() < 0.5:
            patch = 255.0 - patch
        return np.clip((patch - patch.mean()) * rng.uniform(0.8, 2.0) + rng.uniform(40, 215), 0, 255)
