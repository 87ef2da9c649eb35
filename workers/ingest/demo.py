"""A synthetic demo camera: a still scene with slow pedestrians and, after a few seconds, a bright square
crossing fast (the anomaly), written as a real H.264 MP4 (MPEG-4 Part 2 when no H.264 encoder exists).

`demo_source(project_root, data_dir)` picks what the README demo streams: the first Ped2 test video when
the shared dataset is present, else a generated clip in the data directory.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from workers.ingest.clips import write_clip

log = logging.getLogger(__name__)

PEDESTRIANS = 4
PEDESTRIAN_SPEED_PX_S = 12.0
ANOMALY_START_FRACTION = 0.4  # the square enters after 40% of the clip
ANOMALY_CROSSING_S = 2.0


def _background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A walkway: a vertical light gradient, a darker lawn strip, a few fixed benches, and texture."""
    rows = np.linspace(150, 110, height, dtype=np.float32)[:, None]
    scene = np.repeat(rows, width, axis=1)
    scene[: height // 5] = 80  # lawn / wall at the top
    for _ in range(5):
        x, y = int(rng.integers(0, width - 30)), int(rng.integers(height // 5, height - 10))
        scene[y : y + 6, x : x + 30] = 60
    scene += rng.normal(0, 4, size=scene.shape).astype(np.float32)
    return np.clip(scene, 0, 255).astype(np.uint8)


def _draw_blob(image: np.ndarray, cx: float, cy: float, rx: float, ry: float, value: int) -> None:
    height, width = image.shape
    y0, y1 = max(0, int(cy - ry)), min(height, int(cy + ry) + 1)
    x0, x1 = max(0, int(cx - rx)), min(width, int(cx + rx) + 1)
    if y0 >= y1 or x0 >= x1:
        return
    ys, xs = np.ogrid[y0:y1, x0:x1]
    inside = ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1.0
    image[y0:y1, x0:x1][inside] = value


def demo_frames(seconds: float, fps: int, size: tuple[int, int], seed: int = 0) -> list[np.ndarray]:
    """Grayscale frames (height x width) of the demo scene."""
    width, height = size
    rng = np.random.default_rng(seed)
    background = _background(width, height, rng)
    starts = rng.uniform([0, height * 0.3], [width, height * 0.9], size=(PEDESTRIANS, 2))
    directions = rng.choice([-1.0, 1.0], size=PEDESTRIANS)
    anomaly_start_s = seconds * ANOMALY_START_FRACTION
    side = max(8, height // 8)
    frames = []
    for index in range(round(seconds * fps)):
        t = index / fps
        image = background.copy()
        for (x, y), direction in zip(starts, directions, strict=True):
            cx = (x + direction * PEDESTRIAN_SPEED_PX_S * t) % width
            _draw_blob(image, cx, y, rx=height / 40, ry=height / 16, value=40)
        progress = (t - anomaly_start_s) / ANOMALY_CROSSING_S
        if 0 <= progress <= 1:
            left = int(-side + progress * (width + side))
            top = height // 2 - side // 2
            image[top : top + side, max(0, left) : max(0, left + side)] = 250
        frames.append(image)
    return frames


def write_demo_clip(
    path: Path | str, seconds: float = 20.0, fps: int = 10, size: tuple[int, int] = (360, 240), seed: int = 0
) -> Path:
    """Write the demo MP4 (keyframe every second, so a stream joins fast) and return its path."""
    path = Path(path)
    encoder = write_clip(path, demo_frames(seconds, fps, size, seed), fps)
    width, height = size
    log.info("demo clip %s: %.0f s at %d fps, %dx%d, encoder %s", path, seconds, fps, width, height, encoder)
    return path


def demo_source(project_root: Path | str, data_dir: Path | str) -> str:
    """../shared/datasets/ped2/testing/<first video> when present, else a demo clip in data_dir/demo (made once)."""
    testing = Path(project_root).parent / "shared" / "datasets" / "ped2" / "testing"
    if testing.is_dir():
        videos = sorted(p for p in testing.iterdir() if p.is_dir())
        if videos:
            return str(videos[0])
    clip = Path(data_dir) / "demo" / "demo.mp4"
    if not clip.is_file():
        write_demo_clip(clip)
    return str(clip)
