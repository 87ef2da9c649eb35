"""The cameras of a live replay (benchmarks/bench_live.py): a dataset's test videos dealt to N cameras in name
order, each camera's videos concatenated into one H.264 MP4 at the dataset's frame rate and the frames' native
size, and one loopback RTSP server per camera (tests/rtsp_server.py) that plays it once."""

from __future__ import annotations

import itertools
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import av
import cv2
import numpy as np

from models.evaluation import datasets
from models.evaluation.events import true_ranges
from tests.rtsp_process import RTSP_PACKAGES, SYSTEM_PYTHON, start_rtsp_server
from workers.bus.connection import free_port
from workers.ingest.clips import write_clip

Deal = Literal["blocks", "round-robin", "by-camera"]


@dataclass(frozen=True)
class CameraFootage:
    """What one camera plays: its videos back to back in one clip (one stream session), or a clip per video
    served in turn (a session per video: the camera reconnects between them)."""

    camera: str
    videos: tuple[str, ...]
    lengths: tuple[int, ...]  # frames of each video
    clips: tuple[Path, ...]
    fps: float

    @property
    def per_video(self) -> bool:
        return len(self.clips) > 1

    @property
    def frames(self) -> int:
        return sum(self.lengths)

    @property
    def starts(self) -> list[int]:
        """The stream index of each video's first frame."""
        return [0, *itertools.accumulate(self.lengths)][:-1]

    def locate(self, index: int) -> tuple[str, int]:
        """(video, frame) of the stream's index-th frame."""
        position = int(np.searchsorted(np.asarray(self.starts), index, side="right")) - 1
        return self.videos[position], index - self.starts[position]

    def flags(self, labels: dict[str, np.ndarray]) -> np.ndarray:
        """The abnormal flag of every frame of the stream."""
        return np.concatenate([labels[name] for name in self.videos])

    def ranges(self, labels: dict[str, np.ndarray]) -> list[tuple[int, int]]:
        """The ground-truth events in stream indices: each video's own, so events that touch across a cut
        stay two."""
        return [
            (start + first, start + last)
            for name, start in zip(self.videos, self.starts, strict=True)
            for first, last in true_ranges(labels[name])
        ]


def deal(names: list[str], cameras: int, how: Deal) -> list[list[str]]:
    """Videos (in name order) per camera: contiguous blocks (camera 1 the first ones) or round robin."""
    if how == "by-camera":
        raise ValueError("videos dealt by camera follow the dataset's cameras.json: see `camera_videos`")
    if how == "round-robin":
        return [names[index::cameras] for index in range(cameras)]
    size, extra = divmod(len(names), cameras)
    blocks, start = [], 0
    for index in range(cameras):
        end = start + size + (index < extra)
        blocks.append(names[start:end])
        start = end
    return blocks


def native_frames(video: datasets.Video) -> Iterator[np.ndarray]:
    """A test video's frames at their own size (BGR), cropped to even sides for H.264's 4:2:0."""
    if video.file is not None:
        with av.open(str(video.file)) as container:
            images: Iterator[np.ndarray] = (f.to_ndarray(format="bgr24") for f in container.decode(video=0))
            yield from (image[: image.shape[0] // 2 * 2, : image.shape[1] // 2 * 2] for image in images)
        return
    for path in video.frames:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise datasets.DatasetError(f"{path}: not a readable image")
        yield image[: image.shape[0] // 2 * 2, : image.shape[1] // 2 * 2]


def concatenated(videos: list[datasets.Video], lengths: list[int]) -> Iterator[np.ndarray]:
    """The videos' frames back to back; appends each video's frame count to `lengths` as it goes."""
    for video in videos:
        lengths.append(0)
        for image in native_frames(video):
            lengths[-1] += 1
            yield image


def write_footage(
    dataset: Path, cameras: int, how: Deal, folder: Path, per_video: bool
) -> list[CameraFootage]:
    """The cameras' clips in `folder` from DATASET/testing at the dataset's frame rate: one per camera
    (cam1.mp4, ...), or with `per_video` one per video (cam1-<video>.mp4, ...)."""
    videos = {video.name: video for video in datasets.list_videos(dataset, "testing")}
    if not 1 <= cameras <= len(videos):
        raise ValueError(f"{cameras} cameras for {len(videos)} test videos: each camera needs a video")
    fps = datasets.dataset_fps(dataset)
    if fps != int(fps):
        raise ValueError(f"{dataset}: the replay needs a whole frame rate, not {fps}")
    if how == "by-camera":
        dealt = camera_videos(dataset, sorted(videos))
    else:
        dealt = {f"cam{index + 1}": names for index, names in enumerate(deal(sorted(videos), cameras, how))}
    footage = []
    for camera, names in dealt.items():
        lengths: list[int] = []
        groups = [[name] for name in names] if per_video else [names]
        clips = []
        for group in groups:
            clip = folder / (f"{camera}-{group[0]}.mp4" if per_video else f"{camera}.mp4")
            write_clip(clip, concatenated([videos[name] for name in group], lengths), int(fps))
            clips.append(clip)
        footage.append(CameraFootage(camera, tuple(names), tuple(lengths), tuple(clips), fps))
    return footage


def camera_videos(dataset: Path, names: list[str]) -> dict[str, list[str]]:
    """The test videos (in name order) of each camera the dataset's cameras.json names, the cameras in name
    order: a site whose cameras see different scenes, each replayed as the camera that filmed it."""
    named = datasets.video_cameras(dataset)
    missing = [name for name in names if name not in named]
    if missing:
        raise ValueError(f"{dataset}: cameras.json names no camera for test videos {', '.join(missing)}")
    return {
        camera: [n for n in names if named[n] == camera] for camera in sorted(set(named[n] for n in names))
    }


class RtspReplays:
    """One tests/rtsp_server.py per camera on loopback, each playing its clips once, one per connection
    (--once: a camera that reconnects after the last finds nothing more to play); a context manager that
    stops them all."""

    def __init__(self, footage: list[CameraFootage]) -> None:
        self.footage = footage
        self.servers: dict[str, tuple[int, subprocess.Popen[str]]] = {}

    def url(self, camera: str) -> str:
        return f"rtsp://127.0.0.1:{self.servers[camera][0]}/{camera}"

    def __enter__(self) -> RtspReplays:
        if not Path(SYSTEM_PYTHON).exists():
            raise RuntimeError(
                f"the RTSP servers need {SYSTEM_PYTHON} with GStreamer: apt-get install -y {RTSP_PACKAGES}"
            )
        try:
            for item in self.footage:
                self._start(item)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, item: CameraFootage) -> None:
        port = free_port()
        self.servers[item.camera] = (port, start_rtsp_server(port, f"/{item.camera}", item.clips, once=True))

    def stop(self) -> None:
        for _, process in self.servers.values():
            if process.poll() is None:
                process.terminate()
        for _, process in self.servers.values():
            try:
                process.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()

    def __exit__(self, *exc: object) -> None:
        self.stop()
