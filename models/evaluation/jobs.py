"""Whole jobs on a dataset directory: train a detector on its training split, score its testing split.

Used by `vigil train`, `vigil eval` and the benchmarks, so that all of them train and score the same way.
"""

from __future__ import annotations

import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from models.detector.base import Detector
from models.detector.export import save_detector
from models.detector.fitting import FitConfig, TrainedModel, train_detector
from models.detector.runtime import load_detector
from models.detector.streams import DetectorConfig
from models.evaluation import datasets
from models.evaluation.events import VideoAlert, event_report, raise_alerts
from models.evaluation.videos import VideoScores, auc_report, score_videos
from models.scoring.hysteresis import HysteresisConfig
from models.scoring.sampling import sampled_frames

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Split:
    """A split's footage as the detector analyses it: entries of frames (each a video, or past a budget a
    run of one), the frame indices each entry holds in its video (None: every frame of each video), and
    the rate of those frames."""

    videos: list[datasets.Video]
    frames: dict[str, np.ndarray]
    indices: dict[str, np.ndarray] | None
    fps: float
    sources: dict[str, str] = field(default_factory=dict)  # entry -> its video, where `indices` are given
    counts: dict[str, int] = field(default_factory=dict)  # frames each video holds, where `indices` are given

    def native(self, entry: str, position: int) -> int:
        """The frame index in its video of an entry's `position`-th frame."""
        return position if self.indices is None else int(self.indices[entry][position])


def read_analysed(
    dataset: Path,
    split: str,
    height: int,
    width: int,
    *,
    limit: int | None = None,
    budget: int | None = None,
    analysis_fps: float | None = None,
) -> Split:
    """The first `limit` videos of a split at (height, width). Footage faster than `analysis_fps` keeps the
    frames a camera sampled at that rate keeps (models/scoring/sampling.py), as the service analyses it;
    past `budget` frames in all, each video is read as runs of consecutive frames spread evenly over it
    (`datasets.evenly_spread_runs`), each named `<video>@<first frame>`."""
    videos = datasets.list_videos(dataset, split)
    if limit is not None:
        if limit < 1:
            raise datasets.DatasetError(f"--train-videos must be at least 1 (got {limit})")
        videos = videos[:limit]
    footage_fps = datasets.dataset_fps(dataset)
    sampled = analysis_fps is not None and footage_fps > analysis_fps
    fps = min(footage_fps, analysis_fps) if analysis_fps is not None else footage_fps
    counts = {v.name: datasets.frame_count(v) for v in videos} if sampled or budget is not None else {}
    if not sampled and (budget is None or sum(counts.values()) <= budget):
        return Split(videos, {v.name: datasets.read_video(v, height, width) for v in videos}, None, fps)
    kept = {name: sampled_frames(count, footage_fps, fps) for name, count in counts.items()}
    entries = {name: {name: frames} for name, frames in kept.items()}
    total = sum(len(k) for k in kept.values())
    if sampled:
        log.info(
            "%s/%s at %g frames/s: analysing %d of its %d frames, at %g frames/s as the service does",
            dataset.name,
            split,
            footage_fps,
            total,
            sum(counts.values()),
            fps,
        )
    if budget is not None and total > budget:
        runs = datasets.evenly_spread_runs({n: len(k) for n, k in kept.items()}, budget, datasets.RUN_FRAMES)
        entries = {
            name: {f"{name}@{kept[name][start]}": kept[name][start:end] for start, end in parts}
            for name, parts in runs.items()
        }
        log.info(
            "%s/%s holds %d frames, more than the %d a fit reads: reading %d of them, as runs of up to %d "
            "consecutive frames spread evenly over each video",
            dataset.name,
            split,
            total,
            budget,
            sum(len(i) for e in entries.values() for i in e.values()),
            datasets.RUN_FRAMES,
        )
    frames: dict[str, np.ndarray] = {}
    indices: dict[str, np.ndarray] = {}
    sources: dict[str, str] = {}
    for video in tqdm(videos, desc=f"reading {split}", unit="video", dynamic_ncols=True):
        parts = entries.get(video.name, {})
        if not parts:
            continue
        read = datasets.read_frames(video, np.concatenate(list(parts.values())), height, width)
        offset = 0
        for entry, wanted in parts.items():
            part = read[offset : offset + len(wanted)]  # a recording shorter than counted: fewer
            offset += len(wanted)
            if len(part):
                frames[entry], indices[entry], sources[entry] = part, wanted[: len(part)], video.name
    return Split(videos, frames, indices, fps, sources, counts)


def read_split(
    dataset: Path, split: str, height: int, width: int, limit: int | None = None, budget: int | None = None
) -> tuple[list[datasets.Video], dict[str, np.ndarray]]:
    """The videos of a split and their frames as `read_analysed` reads them, at the footage's own rate."""
    analysed = read_analysed(dataset, split, height, width, limit=limit, budget=budget)
    return analysed.videos, analysed.frames


def video_labels(dataset: Path, split: Split) -> dict[str, np.ndarray] | None:
    """labels.json's flags of every frame of each of the split's videos (None without labels)."""
    if split.indices is None:
        return datasets.load_labels(dataset, split.frames)
    return datasets.load_labels(dataset, {name: range(count) for name, count in split.counts.items()})


def analysed_labels(split: Split, labels: dict[str, np.ndarray] | None) -> dict[str, np.ndarray] | None:
    """The flags of each entry's analysed frames, of `video_labels`' flags of every frame."""
    if labels is None or split.indices is None:
        return labels
    return {entry: labels[split.sources[entry]][split.indices[entry]] for entry in split.frames}


def every_frame(split: Split, scores: dict[str, VideoScores]) -> dict[str, VideoScores]:
    """Each video's scores at every one of its frames, where only some were analysed (footage faster than
    the analysis rate): a frame between two analysed ones holds the score of the one before it, as a
    camera's score holds until its next analysed frame (its first frame is always analysed)."""
    if split.indices is None:
        return scores
    out = {}
    for entry, video in scores.items():
        name, analysed = split.sources[entry], split.indices[entry]
        held = np.maximum(np.searchsorted(analysed, np.arange(split.counts[name]), side="right") - 1, 0)
        out[name] = VideoScores(raw=video.raw[held], scores=video.scores[held])
    return out


def frame_metrics(
    split: Split, scores: dict[str, VideoScores], labels: dict[str, np.ndarray] | None
) -> dict[str, float] | None:
    """The AUCs of the scores over every frame of the split's videos (`every_frame`, as `--scores-out`
    writes them) against their `video_labels`; None without labels or where every frame is labelled the
    same."""
    if labels is None:
        return None
    if all(flags.all() for flags in labels.values()) or not any(flags.any() for flags in labels.values()):
        log.warning("labels.json marks every test frame the same: no AUC")
        return None
    return auc_report(every_frame(split, scores), labels)


def train_on_dataset(
    dataset: Path,
    config: DetectorConfig,
    fit: FitConfig | None = None,
    train_videos: int | None = None,
    footage_frames: int = datasets.FIT_FOOTAGE_FRAMES,
    analysis_fps: float | None = None,
    checkpoint: Path | None = None,
    resume: bool = False,
) -> TrainedModel:
    """Fits a detector to DATASET/training (the first `train_videos` videos when given; faster than
    `analysis_fps`, the frames the service would analyse; past the fit's frame budget, runs spread evenly
    over them), its flow set by the footage's own size and the rate of its analysed frames
    (`DetectorConfig.for_source`)."""
    split = read_analysed(
        dataset,
        "training",
        config.height,
        config.width,
        limit=train_videos,
        budget=footage_frames,
        analysis_fps=analysis_fps,
    )
    videos = split.videos
    source = {"dataset": dataset.name, "data_hash": datasets.videos_hash(videos), "videos": len(videos)}
    config = config.for_source(datasets.source_size(videos), split.fps)
    named = datasets.video_cameras(dataset)
    filmed: dict[str, list[datasets.Video]] = {}  # each camera's videos
    for video in videos:
        if video.name in named:
            filmed.setdefault(named[video.name], []).append(video)
    # each camera's own flow, by its own pixels: the site's is the smallest camera's
    flows = {
        camera: config.for_source(datasets.source_size(group), split.fps).flow
        for camera, group in filmed.items()
    }
    cameras = entry_cameras(split, named)
    return train_detector(split.frames, config, source, fit, checkpoint, resume, cameras, flows)


def entry_cameras(split: Split, cameras: dict[str, str]) -> dict[str, str]:
    """The camera of each of the split's entries (a video, or a run of one) whose video `cameras` names."""
    videos = {entry: split.sources.get(entry, entry) for entry in split.frames}
    return {entry: cameras[video] for entry, video in videos.items() if video in cameras}


def save_trained(trained: TrainedModel, path: Path, precision: str = "fp32") -> None:
    save_detector(trained.detector.model, trained.metadata, path, precision)
    log.info("saved model %s to %s", trained.metadata["version"], path)


def serving_detector(trained: TrainedModel, path: Path | None, device: str, threads: int) -> Detector:
    """The trained model as the service would run it: saved (to `path` or a temporary .onnx) and loaded back."""
    if path is not None:
        save_trained(trained, path)
        return load_detector(path, device, threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp) / "model.onnx"
        save_trained(trained, tmp_path)
        return load_detector(tmp_path, device, threads)


@dataclass
class OneClassResult:
    scores: dict[str, VideoScores]
    metrics: dict[str, float] | None
    timings: dict[str, float] = field(default_factory=dict)
    events: dict[str, Any] | None = None
    alerts: list[VideoAlert] = field(default_factory=list)
    split: Split | None = None  # what was read: where each scored frame is in its video


def alert_quality(
    dataset: Path,
    scores: dict[str, VideoScores],
    labels: dict[str, np.ndarray] | None,
    hysteresis: HysteresisConfig,
    fps: float | None = None,
) -> tuple[dict[str, Any] | None, list[VideoAlert]]:
    """The alerts the service's hysteresis raises on the scores of frames at `fps` (default: the
    dataset's), and their event metrics when labelled."""
    fps = datasets.dataset_fps(dataset) if fps is None else fps
    alerts = raise_alerts(scores, hysteresis, fps)
    if labels is None:
        return None, alerts
    return event_report(alerts, {n: labels[n] for n in scores}, fps, hysteresis.threshold), alerts


def score_testing(
    dataset: Path,
    detector: Detector,
    alert_rule: Callable[[float], HysteresisConfig] | None = None,
    analysis_fps: float | None = None,
    camera: str | None = None,
) -> OneClassResult:
    """Scores every frame of DATASET/testing the service would analyse (faster footage: those of
    `analysis_fps`); AUCs when labels.json is present, and the alerts (with their event metrics) that
    the hysteresis `alert_rule` gives for the analysed rate raises. Each video is scored as the camera
    `camera` names, else as cameras.json names its camera (DetectorInfo.for_camera), else as the site."""
    started = time.monotonic()
    split = read_analysed(
        dataset, "testing", detector.info.height, detector.info.width, analysis_fps=analysis_fps
    )
    frames = split.frames
    every_label = video_labels(dataset, split)
    labels = analysed_labels(split, every_label)
    named = datasets.video_cameras(dataset) if camera is None else {v.name: camera for v in split.videos}
    decoded = time.monotonic()
    scores = score_videos(detector, frames, fps=split.fps, cameras=entry_cameras(split, named))
    scored = time.monotonic()
    metrics = frame_metrics(split, scores, every_label)
    events, alerts = (
        alert_quality(dataset, scores, labels, alert_rule(split.fps), split.fps) if alert_rule else (None, [])
    )
    n = sum(len(f) for f in frames.values())
    return OneClassResult(
        scores=scores,
        metrics=metrics,
        events=events,
        alerts=alerts,
        timings={
            "decode_s": decoded - started,
            "score_s": scored - decoded,
            "frames": n,
            "score_fps": n / max(scored - decoded, 1e-9),
        },
        split=split,
    )


def write_scores_csv(scores: dict[str, VideoScores], path: Path, split: Split | None = None) -> None:
    """video, frame (0-based, in the video), score: every frame of each video, where only some were analysed
    those between them holding the score before them (`every_frame`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        out.write("video,frame,score\n")
        for name, video in (every_frame(split, scores) if split is not None else scores).items():
            for frame, score in enumerate(video.scores):
                out.write(f"{name},{frame},{score:.7f}\n")


def machine_info() -> dict[str, Any]:
    import onnxruntime
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
    }
