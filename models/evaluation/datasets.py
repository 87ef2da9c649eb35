"""Reading datasets in the evaluation layout.

DATASET/training/<video>/<frame image>   normal footage only
DATASET/testing/<video>/<frame image>    footage to score
DATASET/labels.json                      optional: {"videos": {<video>: {"frames": N, "abnormal": [[s, e], ...]}}}
                                         (0-based inclusive frame ranges in the sorted file-name order)
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})


class DatasetError(ValueError):
    """The dataset directory is missing or not in the expected layout."""


@dataclass(frozen=True)
class Video:
    name: str
    frames: tuple[Path, ...]  # sorted file-name order


def list_videos(dataset: Path, split: str) -> list[Video]:
    """The videos of DATASET/<split>, sorted by name; each has at least one frame."""
    split_dir = dataset / split
    if not dataset.is_dir():
        raise DatasetError(f"{dataset}: no such dataset directory")
    if not split_dir.is_dir():
        raise DatasetError(f"{dataset}: no '{split}' directory (expected {split}/<video>/<frames>)")
    videos = []
    for video_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        frames = tuple(sorted(p for p in video_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        if frames:
            videos.append(Video(video_dir.name, frames))
    if not videos:
        raise DatasetError(f"{split_dir}: no video directories with image frames")
    return videos


def read_frame(path: Path, height: int, width: int) -> np.ndarray:
    """One frame as grayscale uint8 [height, width]."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise DatasetError(f"{path}: not a readable image")
    if image.shape != (height, width):
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    return image


def read_video(video: Video, height: int, width: int, threads: int = 2) -> np.ndarray:
    """All frames of a video, uint8 [T, height, width] (OpenCV decodes outside the GIL)."""
    with ThreadPoolExecutor(max_workers=max(threads, 1)) as pool:
        return np.stack(list(pool.map(lambda p: read_frame(p, height, width), video.frames)))


def load_labels(dataset: Path, videos: list[Video]) -> dict[str, np.ndarray] | None:
    """Per test video, a bool array (True = abnormal frame); None when the dataset has no labels.json."""
    path = dataset / "labels.json"
    if not path.is_file():
        return None
    try:
        entries = json.loads(path.read_text())["videos"]
        labels = {}
        for video in videos:
            flags = np.zeros(len(video.frames), dtype=bool)
            for start, end in entries[video.name]["abnormal"]:
                flags[int(start) : int(end) + 1] = True
            labels[video.name] = flags
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: not a valid labels file ({type(exc).__name__}: {exc})") from exc
    return labels


def videos_hash(videos: list[Video]) -> str:
    """A short fingerprint of the footage (names and sizes of the frame files), to tie a model to its data."""
    digest = hashlib.sha256()
    for video in videos:
        for frame in video.frames:
            digest.update(f"{video.name}/{frame.name}:{frame.stat().st_size}\n".encode())
    return digest.hexdigest()[:16]


DEFAULT_FPS = 10.0  # UCSD Ped1/Ped2 were filmed at 10 frames/s


def dataset_fps(dataset: Path) -> float:
    """The footage's frame rate: labels.json's "fps" when it has one, else 10."""
    path = dataset / "labels.json"
    try:
        fps = float(json.loads(path.read_text()).get("fps", DEFAULT_FPS)) if path.is_file() else DEFAULT_FPS
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: not a valid labels file ({type(exc).__name__}: {exc})") from exc
    if fps <= 0:
        raise DatasetError(f"{path}: fps must be positive, not {fps}")
    return fps
