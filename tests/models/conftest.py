"""Synthetic footage for the detector tests: small frames with blobs walking across a textured background."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from models.detector.fitting import train_detector
from models.detector.predictor import NetworkConfig
from models.detector.runtime import TorchDetector
from models.detector.streams import DetectorConfig

# tiny networks run fastest single-threaded, and the machine is shared with other test processes
torch.set_num_threads(1)

HEIGHT, WIDTH = 32, 48
TINY_NETWORK = NetworkConfig(height=HEIGHT, width=WIDTH, history=2, widths=(8, 16))
TINY_DETECTOR = DetectorConfig(height=HEIGHT, width=WIDTH, bank_size=32)  # the default streams
TINY_PREDICTING = DetectorConfig(
    height=HEIGHT,
    width=WIDTH,
    bank_size=32,
    streams=("motion", "appearance", "prediction"),
    predictor=TINY_NETWORK,
)


def synthetic_video(
    frames: int, rng: np.random.Generator, anomaly: tuple[int, int] | None = None
) -> np.ndarray:
    """uint8 [frames, H, W]: two dark blobs walking slowly; within `anomaly` (start, end) a bright
    square races across the view."""
    background = cv2.GaussianBlur(rng.integers(90, 150, (HEIGHT, WIDTH)).astype(np.uint8), (5, 5), 0)
    video = np.repeat(background[None], frames, axis=0)
    starts = rng.uniform([4, 4], [HEIGHT - 4, WIDTH - 4], size=(2, 2))
    velocities = rng.uniform(-0.7, 0.7, size=(2, 2))
    for t in range(frames):
        for start, velocity in zip(starts, velocities, strict=True):
            y, x = (start + velocity * t) % [HEIGHT, WIDTH]
            cv2.circle(video[t], (int(x), int(y)), 3, 40, -1)
        if anomaly and anomaly[0] <= t <= anomaly[1]:
            x = int(4 * (t - anomaly[0])) % (WIDTH - 8)
            video[t, 12:20, x : x + 8] = 250
    return video


def walker_video(frames: int, column: float, rng: np.random.Generator) -> np.ndarray:
    """uint8 [frames, H, W]: a dark blob walking up and down at `column` over a still textured view."""
    background = cv2.GaussianBlur(rng.integers(90, 150, (HEIGHT, WIDTH)).astype(np.uint8), (5, 5), 0)
    video = np.repeat(background[None], frames, axis=0)
    for t in range(frames):
        y = 4 + (t * 0.8) % (HEIGHT - 8)
        cv2.circle(video[t], (int(column), int(y)), 3, 40, -1)
    return video


@functools.cache
def walkers_detector() -> TorchDetector:
    """A detector with a place stream, fitted to walkers on a path a quarter of the way across the view
    (shared: tests must not change it)."""
    rng = np.random.default_rng(0)
    config = DetectorConfig(height=HEIGHT, width=WIDTH, streams=("motion", "place"))
    videos = {f"{i}": walker_video(40, WIDTH * 0.25 + 2 * i, rng) for i in range(4)}
    return train_detector(videos, config, {}).detector


def write_dataset(root: Path, seed: int = 0) -> Path:
    """A dataset in the evaluation layout: 2 normal training videos, 2 test videos, labels.json."""
    rng = np.random.default_rng(seed)
    videos = {
        "training/01": synthetic_video(40, rng),
        "training/02": synthetic_video(40, rng),
        "testing/01": synthetic_video(24, rng, anomaly=(12, 23)),
        "testing/02": synthetic_video(20, rng),
    }
    for name, frames in videos.items():
        (root / name).mkdir(parents=True)
        for i, frame in enumerate(frames):
            cv2.imwrite(str(root / name / f"{i:03d}.png"), frame)
    labels = {"videos": {"01": {"frames": 24, "abnormal": [[12, 23]]}, "02": {"frames": 20, "abnormal": []}}}
    (root / "labels.json").write_text(json.dumps(labels))
    return root


@pytest.fixture
def dataset_dir(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "dataset")


def two_camera_footage() -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Two cameras' footage and the camera of each video, each long enough for its own view
    (models/detector/fitting.MIN_VIEW_FRAMES): a path camera (walkers a quarter of the way across) and a
    lane camera (walkers at three quarters)."""
    from models.detector.fitting import MIN_VIEW_FRAMES

    rng = np.random.default_rng(0)
    length = MIN_VIEW_FRAMES // 2
    videos = {f"path-{i}": walker_video(length, WIDTH * 0.25 + 2 * i, rng) for i in range(2)}
    videos |= {f"lane-{i}": walker_video(length, WIDTH * 0.75 + 2 * i, rng) for i in range(2)}
    return videos, {name: name.split("-")[0] for name in videos}
