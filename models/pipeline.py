"""Whole jobs on a dataset directory: train a detector on its training split, score its testing split.

Used by `vigil train`, `vigil eval` and the benchmarks, so that all of them train and score the same way.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models import data
from models.detector import Detector
from models.evaluation import VideoScores, auc_report, fit_calibration, mean_error_map, score_videos
from models.network import NetworkConfig
from models.pseudo import PseudoAnomalyConfig
from models.runtime import MODEL_KIND, TorchDetector, load_detector, model_metadata, save_detector
from models.scoring import patch_size_for
from models.training import TrainConfig, train_predictor

log = logging.getLogger(__name__)


@dataclass
class TrainedModel:
    detector: TorchDetector
    metadata: dict[str, Any]
    seconds: float


def read_split(
    dataset: Path, split: str, height: int, width: int, limit: int | None = None
) -> tuple[list[data.Video], dict[str, np.ndarray]]:
    videos = data.list_videos(dataset, split)
    if limit is not None:
        if limit < 1:
            raise data.DatasetError(f"--train-videos must be at least 1 (got {limit})")
        videos = videos[:limit]
    return videos, {video.name: data.read_video(video, height, width) for video in videos}


def train_on_dataset(
    dataset: Path,
    network: NetworkConfig,
    train_config: TrainConfig,
    pseudo: PseudoAnomalyConfig | None = None,
    train_videos: int | None = None,
    checkpoint: Path | None = None,
    resume: bool = False,
) -> TrainedModel:
    """Trains on DATASET/training (the first `train_videos` videos when given) and calibrates the scores."""
    videos, frames = read_split(dataset, "training", network.height, network.width, train_videos)
    source = {"dataset": dataset.name, "data_hash": data.videos_hash(videos), "videos": len(videos)}
    return train_detector(frames, network, train_config, source, pseudo, checkpoint, resume)


def train_detector(
    frames: dict[str, np.ndarray],
    network: NetworkConfig,
    train_config: TrainConfig,
    source: dict[str, Any],
    pseudo: PseudoAnomalyConfig | None = None,
    checkpoint: Path | None = None,
    resume: bool = False,
) -> TrainedModel:
    """Trains a detector on normal videos (uint8 [T, H, W] each, at the network's input size), then fits its
    error baseline and score calibration; `source` describes the footage in the metadata."""
    started = time.monotonic()
    pseudo = pseudo or PseudoAnomalyConfig()
    result = train_predictor(list(frames.values()), network, pseudo, train_config, checkpoint, resume)
    metadata = model_metadata(
        network,
        calibration=None,
        patch=patch_size_for(network.height),
        extra={
            "version": f"{MODEL_KIND}-{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%SZ')}",
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "training": {
                **source,
                "frames": int(sum(len(f) for f in frames.values())),
                "steps": result.steps,
                "seconds": round(result.seconds, 1),
                "final_loss": result.final_loss,
                "config": train_config.to_dict(),
                "pseudo_anomalies": pseudo.to_dict(),
            },
            "metrics": {},
        },
    )
    detector = TorchDetector(result.model, metadata)
    result.model.set_baseline(mean_error_map(detector, frames))
    # the prior every new camera starts from: raw scores of the normal training footage, streamed
    calibration = fit_calibration(detector, frames)
    metadata["calibration"] = calibration.to_dict()
    return TrainedModel(TorchDetector(result.model, metadata), metadata, time.monotonic() - started)


def save_trained(trained: TrainedModel, path: Path) -> None:
    save_detector(trained.detector.model, trained.metadata, path)
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


def score_testing(dataset: Path, detector: Detector) -> OneClassResult:
    """Scores every frame of DATASET/testing; AUCs when labels.json is present."""
    started = time.monotonic()
    videos, frames = read_split(dataset, "testing", detector.info.height, detector.info.width)
    labels = data.load_labels(dataset, videos)
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
    n = sum(len(f) for f in frames.values())
    return OneClassResult(
        scores=scores,
        metrics=metrics,
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
