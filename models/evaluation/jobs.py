"""Whole jobs on a dataset directory: train a detector on its training split, score its testing split.

Used by `vigil train`, `vigil eval` and the benchmarks, so that all of them train and score the same way.
"""

from __future__ import annotations

import logging
import os
import platform
import tempfile
import time
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

log = logging.getLogger(__name__)


def read_split(
    dataset: Path, split: str, height: int, width: int, limit: int | None = None, budget: int | None = None
) -> tuple[list[datasets.Video], dict[str, np.ndarray]]:
    """The videos of a split and their frames at (height, width). Past `budget` frames in all, each video
    is read as runs of consecutive frames spread evenly over it (`datasets.evenly_spread_runs`), each run
    named `<video>@<first frame>`: memory and fitting time stay bounded on long footage."""
    videos = datasets.list_videos(dataset, split)
    if limit is not None:
        if limit < 1:
            raise datasets.DatasetError(f"--train-videos must be at least 1 (got {limit})")
        videos = videos[:limit]
    lengths = {video.name: datasets.frame_count(video) for video in videos} if budget is not None else {}
    total = sum(lengths.values())
    if budget is None or total <= budget:
        return videos, {video.name: datasets.read_video(video, height, width) for video in videos}
    runs = datasets.evenly_spread_runs(lengths, budget, datasets.RUN_FRAMES)
    kept = sum(end - start for parts in runs.values() for start, end in parts)
    log.info(
        "%s/%s holds %d frames, more than the %d a fit reads: reading %d of them, as runs of up to %d "
        "consecutive frames spread evenly over each video",
        dataset.name,
        split,
        total,
        budget,
        kept,
        datasets.RUN_FRAMES,
    )
    frames: dict[str, np.ndarray] = {}
    for video in tqdm(videos, desc=f"reading {split}", unit="video", dynamic_ncols=True):
        for (start, _), part in datasets.read_runs(video, runs.get(video.name, []), height, width):
            frames[f"{video.name}@{start}"] = part
    return videos, frames


def train_on_dataset(
    dataset: Path,
    config: DetectorConfig,
    fit: FitConfig | None = None,
    train_videos: int | None = None,
    footage_frames: int = datasets.FIT_FOOTAGE_FRAMES,
    checkpoint: Path | None = None,
    resume: bool = False,
) -> TrainedModel:
    """Fits a detector to DATASET/training (the first `train_videos` videos when given; past the fit's
    frame budget, runs spread evenly over them), its flow set by the footage's own size and frame rate
    (`DetectorConfig.for_source`)."""
    videos, frames = read_split(
        dataset, "training", config.height, config.width, train_videos, footage_frames
    )
    source = {"dataset": dataset.name, "data_hash": datasets.videos_hash(videos), "videos": len(videos)}
    config = config.for_source(datasets.source_size(videos), datasets.dataset_fps(dataset))
    return train_detector(frames, config, source, fit, checkpoint, resume)


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


def alert_quality(
    dataset: Path,
    scores: dict[str, VideoScores],
    labels: dict[str, np.ndarray] | None,
    hysteresis: HysteresisConfig,
) -> tuple[dict[str, Any] | None, list[VideoAlert]]:
    """The alerts the service's hysteresis raises on the scores, and their event metrics when labelled."""
    fps = datasets.dataset_fps(dataset)
    alerts = raise_alerts(scores, hysteresis, fps)
    if labels is None:
        return None, alerts
    return event_report(alerts, {n: labels[n] for n in scores}, fps, hysteresis.threshold), alerts


def score_testing(
    dataset: Path, detector: Detector, hysteresis: HysteresisConfig | None = None
) -> OneClassResult:
    """Scores every frame of DATASET/testing; AUCs when labels.json is present, and the alerts (with their
    event metrics) that this hysteresis raises."""
    started = time.monotonic()
    _, frames = read_split(dataset, "testing", detector.info.height, detector.info.width)
    labels = datasets.load_labels(dataset, frames)
    decoded = time.monotonic()
    scores = score_videos(detector, frames)
    scored = time.monotonic()
    metrics = None
    if labels is not None:
        flags = np.concatenate(list(labels.values()))
        if flags.all() or not flags.any():
            log.warning("labels.json marks every test frame the same: no AUC")
        else:
            metrics = auc_report(scores, labels)
    events, alerts = alert_quality(dataset, scores, labels, hysteresis) if hysteresis else (None, [])
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
    )


def write_scores_csv(scores: dict[str, VideoScores], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        out.write("video,frame,score\n")
        for name, video in scores.items():
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
