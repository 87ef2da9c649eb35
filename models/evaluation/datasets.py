"""Reading datasets in the evaluation layout.

DATASET/training/<video>/<frame image>   normal footage only (or training/<video>.mp4|.avi|.mkv, a recording)
DATASET/testing/<video>/<frame image>    footage to score (or testing/<video>.<ext>)
DATASET/labels.json                      optional: {"videos": {<video>: {"frames": N, "abnormal": [[s, e], ...]}}}
                                         (0-based inclusive frame ranges in the sorted file-name order, for a
                                         recording in decode order)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence, Sized
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv"})


class DatasetError(ValueError):
    """The dataset directory is missing or not in the expected layout."""


@dataclass(frozen=True)
class Video:
    name: str
    frames: tuple[Path, ...] = ()  # a frame folder's images in sorted file-name order
    file: Path | None = None  # a recording, decoded in order (frames is then empty)


def _video_at(path: Path) -> Video | None:
    """A frame folder with at least one image or a recording file; None for anything else."""
    if path.is_dir():
        frames = tuple(sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        return Video(path.name, frames) if frames else None
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        return Video(path.stem, file=path)
    return None


def list_videos(dataset: Path, split: str) -> list[Video]:
    """The videos of DATASET/<split> (frame folders and recordings), sorted by name."""
    split_dir = dataset / split
    expected = f"expected {split}/<video>/<frames> or {split}/<video>.mp4|.avi|.mkv"
    if not dataset.is_dir():
        raise DatasetError(f"{dataset}: no such dataset directory")
    if not split_dir.is_dir():
        raise DatasetError(f"{dataset}: no '{split}' directory ({expected})")
    videos: dict[str, Video] = {}
    for path in sorted(split_dir.iterdir()):
        video = _video_at(path)
        if video is None:
            continue
        if video.name in videos:  # labels.json names videos: two with one name would share labels
            raise DatasetError(f"{split_dir}: two videos named {video.name!r} (a folder and a file?)")
        videos[video.name] = video
    if not videos:
        raise DatasetError(f"{split_dir}: no videos ({expected})")
    return [videos[name] for name in sorted(videos)]


def _fit(image: np.ndarray, height: int, width: int) -> np.ndarray:
    if image.shape != (height, width):
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    return image


def _read_image(path: Path) -> np.ndarray:
    """A frame image as stored, grayscale uint8 [H, W]."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise DatasetError(f"{path}: not a readable image")
    return image


def read_frame(path: Path, height: int, width: int) -> np.ndarray:
    """One frame as grayscale uint8 [height, width]."""
    return _fit(_read_image(path), height, width)


@contextmanager
def _video_stream(path: Path) -> Iterator[tuple[av.container.InputContainer, av.video.VideoStream]]:
    """A recording's container and first video stream; an unreadable file is a DatasetError that says so."""
    try:
        with av.open(str(path)) as container:
            yield container, container.streams.video[0]
    except (av.FFmpegError, IndexError, UnicodeDecodeError) as exc:  # IndexError: no video stream
        raise DatasetError(f"{path}: not a readable video ({type(exc).__name__}: {exc})") from exc


def _decoded(path: Path) -> Iterator[av.VideoFrame]:
    """A recording's frames in decode order, each converted by the caller only if it keeps it."""
    with _video_stream(path) as (container, stream):
        stream.thread_type = "AUTO"
        yield from container.decode(stream)


def _gray(frame: av.VideoFrame, height: int, width: int) -> np.ndarray:
    return _fit(frame.to_ndarray(format="gray"), height, width)


def decode_recording(path: Path, height: int, width: int) -> np.ndarray:
    """Every frame of a recording's first video stream in decode order, uint8 [T, height, width]."""
    frames = [_gray(frame, height, width) for frame in _decoded(path)]
    if not frames:
        raise DatasetError(f"{path}: the recording has no frames")
    return np.stack(frames)


def _stored_size(video: Video) -> tuple[int, int]:
    if video.file is None:
        height, width = _read_image(video.frames[0]).shape
        return height, width
    with _video_stream(video.file) as (_, stream):
        return stream.codec_context.height, stream.codec_context.width


def source_size(videos: Sequence[Video]) -> tuple[int, int]:
    """(height, width) of the videos' frames as stored, before any resize (the smallest of their first
    frames): how much detail the footage carries."""
    if not videos:
        raise DatasetError("no videos to size")
    sizes = [_stored_size(video) for video in videos]
    return min(h for h, _ in sizes), min(w for _, w in sizes)


def read_video(video: Video, height: int, width: int, threads: int = 2) -> np.ndarray:
    """All frames of a video, uint8 [T, height, width] (OpenCV decodes outside the GIL)."""
    if video.file is not None:
        return decode_recording(video.file, height, width)
    return _read_images(video.frames, height, width, threads)


def _read_images(paths: Sequence[Path], height: int, width: int, threads: int) -> np.ndarray:
    with ThreadPoolExecutor(max_workers=max(threads, 1)) as pool:
        return np.stack(list(pool.map(lambda p: read_frame(p, height, width), paths)))


def frame_count(video: Video) -> int:
    """How many frames a video holds, without decoding a recording (its packets are counted)."""
    if video.file is None:
        return len(video.frames)
    with _video_stream(video.file) as (container, stream):
        return sum(1 for packet in container.demux(stream) if packet.size)


Run = tuple[int, int]  # [start, end) frames of a video
# training frames a fit reads, about 1.7 GB at 360x240 (longer footage: runs spread evenly over it), so that
# a large dataset neither exhausts memory nor takes hours to fit; UCSD Ped1 and Ped2 are read whole
FIT_FOOTAGE_FRAMES = 20000
RUN_FRAMES = 100  # consecutive frames of one such run


def evenly_spread_runs(lengths: Mapping[str, int], budget: int, run: int) -> dict[str, list[Run]]:
    """The runs of each video to read when the footage holds more than `budget` frames: each video keeps a
    share of the budget in proportion to its length, as runs of at most `run` consecutive frames (the
    motion stream needs each frame's past) spread evenly over it. Footage within the budget is kept whole."""
    if budget < 1 or run < 1:
        raise ValueError(f"the frame budget and the run length must be positive (got {budget}, {run})")
    total = sum(lengths.values())
    if total <= budget:
        return {name: [(0, count)] for name, count in lengths.items() if count}
    runs: dict[str, list[Run]] = {}
    for name, count in lengths.items():
        share = min(count, round(budget * count / total))
        if share < 1:
            continue
        pieces = -(-share // run)
        sizes = [share // pieces + (i < share % pieces) for i in range(pieces)]
        if pieces == 1:  # one run: the middle of the video
            starts = [(count - share) // 2]
        else:  # the first and last frames, and the runs between them evenly apart
            gap = (count - share) / (pieces - 1)
            starts = [round(i * gap) + sum(sizes[:i]) for i in range(pieces)]
        runs[name] = [(start, start + size) for start, size in zip(starts, sizes, strict=True)]
    return runs


def read_frames(video: Video, indices: np.ndarray, height: int, width: int, threads: int = 2) -> np.ndarray:
    """The frames of a video at the sorted `indices`, uint8 [K, height, width] (a recording is decoded once,
    and only those frames are kept; indices past its last frame are left out)."""
    indices = np.asarray(indices, dtype=np.int64)
    if video.file is None:
        paths = [video.frames[i] for i in indices if i < len(video.frames)]
        return (
            _read_images(paths, height, width, threads) if paths else np.empty((0, height, width), np.uint8)
        )
    wanted, last = set(indices.tolist()), int(indices.max()) if len(indices) else -1
    kept = []
    for index, frame in enumerate(_decoded(video.file)):
        if index > last:
            break
        if index in wanted:
            kept.append(_gray(frame, height, width))
    return np.stack(kept) if kept else np.empty((0, height, width), np.uint8)


def load_labels(dataset: Path, videos: Mapping[str, Sized]) -> dict[str, np.ndarray] | None:
    """Per test video (name: its frames, decoded or as files), a bool array (True = abnormal frame); None
    when the dataset has no labels.json."""
    path = dataset / "labels.json"
    if not path.is_file():
        return None
    try:
        entries = json.loads(path.read_text())["videos"]
        labels = {}
        for name, frames in videos.items():
            flags = np.zeros(len(frames), dtype=bool)
            for start, end in entries[name]["abnormal"]:
                flags[int(start) : int(end) + 1] = True
            labels[name] = flags
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: not a valid labels file ({type(exc).__name__}: {exc})") from exc
    return labels


def videos_hash(videos: list[Video]) -> str:
    """A short fingerprint of the footage (names and sizes of the frame files), to tie a model to its data."""
    digest = hashlib.sha256()
    for video in videos:
        for frame in (video.file,) if video.file is not None else video.frames:
            digest.update(f"{video.name}/{frame.name}:{frame.stat().st_size}\n".encode())
    return digest.hexdigest()[:16]


DEFAULT_FPS = 10.0  # UCSD Ped1/Ped2 were filmed at 10 frames/s


def dataset_fps(dataset: Path) -> float:
    """The footage's frame rate: labels.json's "fps" when it has one, else the rate its first test
    recording declares, else 10 (frame folders do not say)."""
    path = dataset / "labels.json"
    try:
        declared = json.loads(path.read_text()).get("fps") if path.is_file() else None
        fps = float(declared) if declared is not None else _recorded_fps(dataset)
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: not a valid labels file ({type(exc).__name__}: {exc})") from exc
    if fps <= 0:
        raise DatasetError(f"{path}: fps must be positive, not {fps}")
    return fps


def _recorded_fps(dataset: Path) -> float:
    try:
        recordings = [video.file for video in list_videos(dataset, "testing") if video.file is not None]
    except DatasetError:  # no testing split: the caller says what is missing where it matters
        return DEFAULT_FPS
    if not recordings:
        return DEFAULT_FPS
    with _video_stream(recordings[0]) as (_, stream):
        rate = stream.average_rate or stream.guessed_rate
    return float(rate) if rate else DEFAULT_FPS


CAMERAS_FILE = "cameras.json"  # optional: {"videos": {"<video>": "<camera>", ...}}, training and testing


def video_cameras(dataset: Path) -> dict[str, str]:
    """The camera each video was filmed by, where a dataset holds several cameras' footage (cameras.json):
    a fit learns each camera's own view, and eval scores each test video as its camera. Empty without the
    file (one camera's footage)."""
    path = dataset / CAMERAS_FILE
    if not path.is_file():
        return {}
    try:
        entries = json.loads(path.read_text())["videos"]
        cameras = {str(video): str(camera) for video, camera in entries.items()}
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise DatasetError(
            f'{path}: not a valid cameras file, expected {{"videos": {{"<video>": "<camera>"}}}} '
            f"({type(exc).__name__}: {exc})"
        ) from exc
    if not all(cameras.values()):
        raise DatasetError(f"{path}: a video's camera name is empty")
    return cameras
