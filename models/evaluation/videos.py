"""Scoring whole videos exactly as the service does (one CameraStream per video, causal), and AUC reports."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from models.detector.base import Detector
from models.detector.scores import raw_scores
from models.evaluation.metrics import per_video_minmax, roc_auc
from models.scoring.camera import CameraStream, ScorerConfig


@dataclass
class VideoScores:
    raw: np.ndarray  # the streams' summed patch z-scores per frame
    scores: np.ndarray  # the service's causal, normalized, smoothed score in [0, 1]


def clip_batches(
    stream: CameraStream, frames: np.ndarray, batch_size: int
) -> Iterator[tuple[int, np.ndarray]]:
    """(index of the first frame, clips) for consecutive batches of a video, as the stream builds them."""
    for start in range(0, len(frames), batch_size):
        yield start, np.stack([stream.push(frame) for frame in frames[start : start + batch_size]])


def served_raw(detector: Detector, clips: np.ndarray, camera: str | None) -> np.ndarray:
    """float32 [B]: the raw scores of a batch of one camera's clips, as the inference worker scores them
    (in the camera's own view where the model keeps one; None: a camera the model has no view of)."""
    cameras = [camera] * len(clips)
    return raw_scores(detector, detector.served_maps(clips, cameras), cameras)


def score_video(
    detector: Detector, frames: np.ndarray, batch_size: int = 32, *, fps: float, camera: str | None = None
) -> VideoScores:
    """Scores every frame of one video (uint8 [T, H, W], `fps` frames a second) through a fresh
    CameraStream, in order, as the service scores `camera` (None: a camera the model has no view of)."""
    stream = CameraStream(detector.info.for_camera(camera), ScorerConfig().at_rate(fps))
    raw = np.empty(len(frames), dtype=np.float32)
    scores = np.empty(len(frames), dtype=np.float32)
    for start, clips in clip_batches(stream, frames, batch_size):  # a clip holds only past frames
        raw[start : start + len(clips)] = served_raw(detector, clips, camera)
        for i in range(start, start + len(clips)):
            scores[i] = stream.score(float(raw[i]))
    return VideoScores(raw=raw, scores=scores)


def score_videos(
    detector: Detector,
    videos: dict[str, np.ndarray],
    batch_size: int = 32,
    desc: str = "scoring",
    *,
    fps: float,
    cameras: dict[str, str] | None = None,
) -> dict[str, VideoScores]:
    """Each video scored as `score_video` does, as its camera (`cameras`: by video name) where named."""
    cameras = cameras or {}
    out = {}
    with tqdm(total=sum(len(f) for f in videos.values()), unit="frame", desc=desc, dynamic_ncols=True) as bar:
        for name, frames in videos.items():
            out[name] = score_video(detector, frames, batch_size, fps=fps, camera=cameras.get(name))
            bar.update(len(frames))
    return out


def auc_report(scored: dict[str, VideoScores], labels: dict[str, np.ndarray]) -> dict[str, float]:
    """micro AUC of the service's scores (primary), of the raw scores, and the papers' per-video min-max one."""
    names = list(scored)
    truth = np.concatenate([labels[name] for name in names])
    minmax = per_video_minmax({name: scored[name].raw for name in names})
    return {
        "micro_auc": roc_auc(truth, np.concatenate([scored[n].scores for n in names])),
        "micro_auc_raw": roc_auc(truth, np.concatenate([scored[n].raw for n in names])),
        "per_video_minmax_auc": roc_auc(truth, np.concatenate([minmax[n] for n in names])),
    }
