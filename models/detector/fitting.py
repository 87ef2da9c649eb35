"""Fitting a detector to normal footage: each stream's normal level, memory and statistics.

- motion: the mean speed of normal footage at every pixel, and the view's perspective: the apparent size
  of things on each row (models/detector/streams.fit_row_scale), which scales the motion stream's speeds and its
  scoring patches;
- place: how often something moves at each pixel (models/detector/place.py), its statistics cross-fitted;
- appearance: a memory of normal image cells, a greedy k-center coreset (PatchCore) of cells sampled
  from every frame, so that rare normal views are remembered as well as common ones;
- prediction (when selected): the U-Net trained by models/detector/predictor_training.py, and its mean error per pixel;
- statistics: each stream's patch scores over the footage (their median and spread: the stream's z units),
  then the calibration of the summed raw score. The appearance statistics are cross-fitted: cells are
  scored against a memory built from the other half of the footage, as unseen normal footage would be.

Frames are taken as a camera streams them (models/scoring/camera.py pads the history of a video's first frames).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from models.detector.backbone import pretrained_features
from models.detector.base import MOTION_STREAMS
from models.detector.coreset import coreset, sample_cells
from models.detector.export import model_metadata, new_version
from models.detector.flow import FlowConfig, clip_speeds
from models.detector.place import moving_counts, place_blur, rarity, typical_speed
from models.detector.predictor_training import TrainConfig, train_predictor
from models.detector.pseudo import PseudoAnomalyConfig
from models.detector.runtime import TorchDetector
from models.detector.scores import (
    ScoreCalibration,
    combined_scores,
    patch_max_scores,
    patch_size_for,
    perspective_patches,
)
from models.detector.streams import STREAM_GATES, DetectorConfig, DetectorNet, fit_row_scale
from models.detector.views import CAMERA_VIEWS, CameraView
from models.scoring.camera import padded_clips

BATCH = 32


@dataclass(frozen=True)
class FitConfig:
    seed: int = 0
    max_frames: int = 4000  # frames whose cells are kept for the memory and the statistics (evenly spread)
    pool_cells: int = 60000  # cells the coreset is chosen from
    train: TrainConfig | None = None  # the prediction stream's training
    pseudo: PseudoAnomalyConfig | None = None
    # frames brought to the footage's contrast as well as its brightness (AppearanceStream.exposed)
    match_contrast: bool = True


def video_clips(frames: np.ndarray, history: int) -> Iterator[tuple[int, np.ndarray]]:
    """(first index, clips) batches of a video (uint8 [T, H, W]) with the padded history a camera has."""
    for start in range(0, len(frames), BATCH):
        yield start, padded_clips(frames, np.arange(start, min(start + BATCH, len(frames))), history)


@dataclass
class FittedDetector:
    model: DetectorNet
    stream_stats: dict[str, ScoreCalibration]
    calibration: ScoreCalibration
    training: dict[str, Any]  # what the fit did, for the metadata
    views: dict[str, CameraView] = field(default_factory=dict)  # each camera's own, for several cameras'

    def metadata_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = {
            "stream_stats": {name: stats.to_dict() for name, stats in self.stream_stats.items()},
            "calibration": self.calibration.to_dict(),
            # always written: a cycle's fresh fit replaces its parent's views, with none where it has none
            CAMERA_VIEWS: {camera: view.to_dict() for camera, view in self.views.items()},
        }
        if self.model.motion is not None:  # its patches follow it: DetectorInfo.stream_patches
            stats["row_scale"] = [round(float(v), 4) for v in self.model.motion.row_scale[:, 0]]
        return stats


def _folds(videos: dict[str, np.ndarray]) -> list[list[tuple[str, slice]]]:
    """Two halves of the footage for cross-fitting: alternate videos, or the halves of a single one."""
    names = list(videos)
    if len(names) >= 2:
        return [[(n, slice(None)) for n in names[0::2]], [(n, slice(None)) for n in names[1::2]]]
    half = len(videos[names[0]]) // 2
    return [[(names[0], slice(0, half))], [(names[0], slice(half, None))]]


def _frame_picks(videos: dict[str, np.ndarray], limit: int) -> dict[str, np.ndarray]:
    """Indices of the frames (of each video) kept for the appearance fit: all, or `limit` evenly spread."""
    total = sum(len(frames) for frames in videos.values())
    step = max(1.0, total / limit)
    picks, offset = {}, 0
    for name, frames in videos.items():
        positions = np.arange(len(frames)) + offset
        picks[name] = np.flatnonzero(np.floor(positions / step) != np.floor((positions - 1) / step))
        offset += len(frames)
    return picks


def fit_detector(
    videos: dict[str, np.ndarray],
    config: DetectorConfig,
    fit: FitConfig | None = None,
    checkpoint: Any = None,
    resume: bool = False,
    cameras: dict[str, str] | None = None,
    flows: dict[str, FlowConfig] | None = None,
) -> FittedDetector:
    """A DetectorNet fitted to normal videos (uint8 [T, H, W] each, at the detector's input size); with
    `cameras` (the camera of each video) naming two cameras or more, also each camera's own view, measured
    with the flow `flows` gives the camera (by default the site's, `config.flow`)."""
    fit = fit or FitConfig()
    rng = np.random.default_rng(fit.seed)
    torch.manual_seed(fit.seed)
    videos = {name: frames for name, frames in videos.items() if len(frames)}
    if not videos:
        raise ValueError("no frames to fit the detector to")
    model = DetectorNet(config).eval()
    training: dict[str, Any] = {"frames": int(sum(len(f) for f in videos.values()))}
    patch = patch_size_for(config.height)
    patch_scores: dict[str, dict[str, np.ndarray]] = {}
    if model.motion is not None:
        patch_scores.update(_fit_motion(model, videos, config))
    if model.appearance is not None:
        patch_scores["appearance"] = _fit_appearance(model, videos, config, fit, rng, patch)
    if model.prediction is not None:
        assert config.predictor is not None
        result = train_predictor(
            list(videos.values()),
            config.predictor,
            fit.pseudo or PseudoAnomalyConfig(),
            fit.train or TrainConfig(),
            checkpoint,
            resume,
        )
        model.prediction = result.model
        training["prediction"] = {"steps": result.steps, "seconds": round(result.seconds, 1)}
        patch_scores["prediction"] = _fit_prediction(model, videos, config)
    stats = _stream_stats(patch_scores)
    # the raw score over the frames every stream scored (the appearance fit may keep only a subsample)
    common = _frame_picks(videos, fit.max_frames) if model.appearance is not None else None
    calibration = _calibration(patch_scores, stats, config.streams, list(videos), common)
    views = _camera_views(videos, cameras or {}, flows or {}, config, patch_scores, common)
    model.anchors = anchor_clips(videos, config.history, ANCHOR_CLIPS, rng)
    return FittedDetector(model.eval(), stats, calibration, training, views)


def _stream_stats(patch_scores: dict[str, dict[str, np.ndarray]]) -> dict[str, ScoreCalibration]:
    """Each stream's statistics over its patch scores of every video in `patch_scores`."""
    return {
        name: ScoreCalibration.fit(np.concatenate(list(by_video.values())), gate=STREAM_GATES.get(name))
        for name, by_video in patch_scores.items()
    }


def _calibration(
    patch_scores: dict[str, dict[str, np.ndarray]],
    stats: dict[str, ScoreCalibration],
    streams: tuple[str, ...],
    videos: list[str],
    common: dict[str, np.ndarray] | None,
) -> ScoreCalibration:
    """The calibration of the raw frame score over `videos`' frames that every stream scored (`common`: the
    frames the appearance fit kept, where it kept only some)."""
    per_stream = []
    for name in streams:
        by_video = patch_scores[name]
        if common is not None and name != "appearance":
            by_video = {video: scores[common[video]] for video, scores in by_video.items()}
        per_stream.append(np.concatenate([by_video[video] for video in videos]))
    return ScoreCalibration.fit(combined_scores(np.stack(per_stream, axis=1), [stats[n] for n in streams]))


# a camera with fewer frames in a fit keeps the site's view: a place map and a normal speed per pixel from
# a few seconds of footage are mostly noise (a guard, not tuned: the views measured had 2,400 frames or more)
MIN_VIEW_FRAMES = 200


def _camera_views(
    videos: dict[str, np.ndarray],
    cameras: dict[str, str],
    flows: dict[str, FlowConfig],
    config: DetectorConfig,
    patch_scores: dict[str, dict[str, np.ndarray]],
    common: dict[str, np.ndarray] | None,
) -> dict[str, CameraView]:
    """Each camera's own view (models/detector/views.py), where the footage is several cameras' (`cameras`:
    the camera of each video): its motion and place fitted to its videos alone, its appearance statistics
    from the site's cross-fitted scores of its videos. None for one camera's footage (its view is the site's),
    nor for a camera with fewer than MIN_VIEW_FRAMES frames."""
    named = sorted({cameras[name] for name in videos if name in cameras})
    if len(named) < 2 or "motion" not in config.streams:
        return {}
    views = {}
    for camera in named:
        own = {name: frames for name, frames in videos.items() if cameras.get(name) == camera}
        if sum(len(frames) for frames in own.values()) < MIN_VIEW_FRAMES:
            continue  # too little to learn where and how fast things move: scored in the site's view
        flow = flows.get(camera, config.flow)
        own_config = replace(
            config, flow=flow, streams=tuple(s for s in config.streams if s in MOTION_STREAMS)
        )
        motion_only = DetectorNet(own_config)
        scores = _fit_motion(motion_only, own, own_config, camera)
        scores.update({name: patch_scores[name] for name in patch_scores if name not in scores})
        scores = {name: {video: by_video[video] for video in own} for name, by_video in scores.items()}
        stats = _stream_stats(scores)
        motion, place = motion_only.motion, motion_only.place
        assert motion is not None
        views[camera] = CameraView(
            normal_speed=motion.normal_speed.numpy().copy(),
            row_scale=motion.row_scale[:, 0].numpy().copy(),
            rarity=place.rarity.numpy().copy() if place is not None else None,
            typical=float(place.typical) if place is not None else 1.0,
            stream_stats=stats,
            calibration=_calibration(scores, stats, config.streams, list(own), common),
            flow=flow if flow != config.flow else None,
        )
    return views


ANCHOR_CLIPS = 48  # about 12 MB at 240x360 with two frames of history


def anchor_clips(
    videos: dict[str, np.ndarray], history: int, count: int, rng: np.random.Generator
) -> np.ndarray:
    """uint8 [<= count, history + 1, H, W]: clips at random places of the videos, each with its real past
    (a clip's first frames are not padded where a video is long enough)."""
    places = [
        (name, i)
        for name, frames in videos.items()
        for i in range(min(history, len(frames) - 1), len(frames))
    ]
    picks = sorted(rng.choice(len(places), min(count, len(places)), replace=False))
    return np.stack([padded_clips(videos[places[k][0]], np.array([places[k][1]]), history)[0] for k in picks])


def _part_speeds(
    videos: dict[str, np.ndarray], parts: list[tuple[str, slice]], config: DetectorConfig, bar: Any
) -> Iterator[tuple[str, np.ndarray]]:
    """(video, speed maps float32 [B, H, W]) of batches of the frames of `parts`, each with its real past."""
    for name, part in parts:
        indices = np.arange(len(videos[name]))[part]
        for start in range(0, len(indices), BATCH):
            clips = padded_clips(videos[name], indices[start : start + BATCH], config.history)
            yield name, clip_speeds(clips, config.flow)
            bar.update(len(clips))


def _fit_motion(
    model: DetectorNet, videos: dict[str, np.ndarray], config: DetectorConfig, camera: str | None = None
) -> dict[str, dict[str, np.ndarray]]:
    """The mean speed per pixel and the view's scale per row, and where things move (the place stream,
    when selected); returns each of these streams' patch scores of each video, with patches that follow
    the row scale. The place stream's are cross-fitted: each half of the footage scored by where the
    other half moved. The flow is cheaper to compute again for each pass than to keep."""
    motion, place = model.motion, model.place
    assert motion is not None
    total = np.zeros((config.height, config.width), dtype=np.float64)
    row_sum = np.zeros(config.height, dtype=np.float64)
    row_squares = np.zeros(config.height, dtype=np.float64)
    everything = [(name, slice(None)) for name in videos]
    folds = _folds(videos)
    counts = [np.zeros_like(total) for _ in folds]
    fold_frames = [0 for _ in folds]
    count = 0
    scores: dict[str, dict[str, list[np.ndarray]]] = {"motion": {name: [] for name in videos}}
    passes = 2 if place is None else 3
    with tqdm(
        total=passes * sum(len(f) for f in videos.values()),
        desc="motion" if camera is None else f"motion of {camera}",
        unit="frame",
        dynamic_ncols=True,
    ) as bar:
        for _, speed in _part_speeds(videos, everything, config, bar):
            count += len(speed)
            total += speed.sum(axis=0)
            row_sum += speed.sum(axis=(0, 2), dtype=np.float64)
            row_squares += np.square(speed, dtype=np.float64).sum(axis=(0, 2))
        motion.normal_speed.copy_(torch.from_numpy((total / max(count, 1)).astype(np.float32)))
        row_scale = fit_row_scale(row_sum, row_squares)
        motion.row_scale.copy_(torch.from_numpy(row_scale)[:, None])
        typical = typical_speed(row_sum, row_squares, row_scale)
        patch = perspective_patches(patch_size_for(config.height), row_scale)
        for index, fold in enumerate(folds):
            for name, speed in _part_speeds(videos, fold, config, bar):
                with torch.inference_mode():
                    scores["motion"][name].append(
                        patch_max_scores(motion(torch.from_numpy(speed)).numpy(), patch)
                    )
                if place is not None:
                    counts[index] += moving_counts(speed, row_scale, typical)
                    fold_frames[index] += len(speed)
        if place is not None:
            blur = place_blur(config.height)
            scores["place"] = {name: [] for name in videos}
            for index, fold in enumerate(folds):
                place.fit(rarity(counts[1 - index], fold_frames[1 - index], blur), typical)
                for name, speed in _part_speeds(videos, fold, config, bar):
                    with torch.inference_mode():
                        maps = model.place_map(torch.from_numpy(speed)).numpy()
                    scores["place"][name].append(patch_max_scores(maps, patch))
            place.fit(rarity(sum(counts), sum(fold_frames), blur), typical)
    return {
        stream: {name: np.concatenate(parts) for name, parts in by_video.items()}
        for stream, by_video in scores.items()
    }


def frame_features(model: DetectorNet, frames: np.ndarray) -> torch.Tensor:
    """float16 [T, C, h, w] appearance features of uint8 frames [T, H, W]."""
    assert model.appearance is not None
    out = []
    with torch.inference_mode():
        for start in range(0, len(frames), BATCH):
            batch = torch.from_numpy(frames[start : start + BATCH]).float()[:, None] / 255.0
            out.append(model.appearance.features(batch).half())
    return torch.cat(out)


def frame_light(frames: np.ndarray) -> np.ndarray:
    """float64 [T, 2]: the mean brightness and contrast (standard deviation) of each uint8 frame [T, H, W]."""
    flat = frames.reshape(len(frames), -1)
    return np.stack([flat.mean(axis=1), flat.std(axis=1)], axis=1)


def _fit_appearance(
    model: DetectorNet,
    videos: dict[str, np.ndarray],
    config: DetectorConfig,
    fit: FitConfig,
    rng: np.random.Generator,
    patch: int,
) -> dict[str, np.ndarray]:
    """The memory of normal cells (cross-fitted statistics); returns the kept frames' patch scores."""
    appearance = model.appearance
    assert appearance is not None
    backbone = pretrained_features(config.backbone_blocks)
    appearance.backbone.load_state_dict(backbone.state_dict())
    picks = _frame_picks(videos, fit.max_frames)
    kept = sum(len(p) for p in picks.values())
    # every frame's features are taken at the kept frames' mean brightness and contrast
    # (AppearanceStream.exposed)
    if kept:
        light = np.concatenate([frame_light(frames[picks[name]]) for name, frames in videos.items()])
        appearance.brightness.fill_(float(light[:, 0].mean()) / 255.0)
        appearance.contrast.fill_(float(light[:, 1].mean()) / 255.0 if fit.match_contrast else 0.0)
    features: dict[str, torch.Tensor] = {}
    with tqdm(total=kept, desc="appearance", unit="frame", dynamic_ncols=True) as bar:
        for name, frames in videos.items():
            features[name] = frame_features(model, frames[picks[name]])
            bar.update(len(picks[name]))
    per_frame = max(1, fit.pool_cells // max(kept, 1))

    def pool(parts: list[tuple[str, slice]]) -> torch.Tensor:
        chosen = [features[name][part] for name, part in parts]
        return torch.cat([sample_cells(part, per_frame * len(part), rng) for part in chosen])

    folds = _folds({name: frames[picks[name]] for name, frames in videos.items()})
    scores: dict[str, list[np.ndarray]] = {name: [] for name in videos}
    for index, fold in enumerate(folds):
        other = folds[1 - index]
        appearance.set_bank(coreset(pool(other), config.bank_size, rng))
        for name, part in fold:
            scores[name].append(_appearance_scores(appearance, features[name][part], patch))
    everything = [(name, slice(None)) for name in videos]
    appearance.set_bank(coreset(pool(everything), config.bank_size, rng))
    return {name: np.concatenate(parts) for name, parts in scores.items()}


def _appearance_scores(appearance: Any, features: torch.Tensor, patch: int) -> np.ndarray:
    out = []
    with torch.inference_mode():
        for start in range(0, len(features), BATCH):
            maps = appearance.upsample(appearance.cell_distances(features[start : start + BATCH].float()))
            out.append(patch_max_scores(maps.numpy(), patch))
    return np.concatenate(out) if out else np.empty(0, np.float32)


def _fit_prediction(
    model: DetectorNet, videos: dict[str, np.ndarray], config: DetectorConfig
) -> dict[str, np.ndarray]:
    """The predictor's mean error per pixel (subtracted from its maps); returns its patch scores."""
    predictor = model.prediction
    assert predictor is not None
    history = predictor.config.history
    total = torch.zeros(config.height, config.width, dtype=torch.float64)
    count = 0
    with torch.inference_mode():
        predictor.baseline.zero_()
        for frames in videos.values():
            for _, clips in video_clips(frames, history):
                total += predictor(torch.from_numpy(clips)).double().sum(0)
                count += len(clips)
        predictor.baseline.copy_((total / max(count, 1)).float())
        patch = patch_size_for(config.height)
        return {
            name: np.concatenate(
                [
                    patch_max_scores(predictor(torch.from_numpy(c)).numpy(), patch)
                    for _, c in video_clips(f, history)
                ]
            )
            for name, f in videos.items()
        }


@dataclass
class TrainedModel:
    detector: TorchDetector
    metadata: dict[str, Any]
    seconds: float


def train_detector(
    frames: dict[str, np.ndarray],
    config: DetectorConfig,
    source: dict[str, Any],
    fit: FitConfig | None = None,
    checkpoint: Path | None = None,
    resume: bool = False,
    cameras: dict[str, str] | None = None,
    flows: dict[str, FlowConfig] | None = None,
) -> TrainedModel:
    """Fits a detector to normal videos (uint8 [T, H, W] each, at the detector's input size); `source`
    describes the footage in the metadata; `cameras`, `flows`: each video's camera, each camera's flow, as
    fit_detector."""
    started = time.monotonic()
    fit = fit or FitConfig()
    fitted = fit_detector(frames, config, fit, checkpoint, resume, cameras, flows)
    seconds = time.monotonic() - started
    metadata = model_metadata(
        config,
        extra={
            "version": new_version(config.streams),
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "patch": patch_size_for(config.height),
            **fitted.metadata_stats(),
            "training": {
                **source,
                **fitted.training,
                "seed": fit.seed,
                "seconds": round(seconds, 1),
                "config": fit.train.to_dict() if fit.train and "prediction" in config.streams else None,
            },
            "metrics": {},
        },
    )
    return TrainedModel(TorchDetector(fitted.model, metadata), metadata, seconds)
