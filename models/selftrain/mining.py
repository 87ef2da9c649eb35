"""Mining confident frames from a scored window of a stream: the rules (plain functions over scores and
error maps), the window's evidence under the model in service, and `mine`, which applies them.

The paper's rule (mining normal data for retraining, sections 3.3-3.4):
- abnormal frames: frame score S >= eta_s; their pixel masks hide where the error is high;
- normal frames: among S < eta_s, RS_h = mean error over pixels above a coarse eta_p; then eta_p := min RS
  and FS_h = mean error over pixels above it; RS and FS min-max normalized over the candidates;
  hinge T = alpha * (X - X^2) with X = mean(normalized RS); keep frame h if normalized FS_h < T;
- only runs of at least FNmin consecutive selected frames are kept;
- a pixel takes part in the loss (MASK = 1) only where its normalized error is below eta_a.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from models.detector.base import Detector
from models.detector.scores import (
    ScoreCalibration,
    anomaly_maps,
    raw_scores,
)
from models.scoring.camera import CameraScorer, ScorerConfig, score_of_z
from models.selftrain.config import BATCH, MinedSet, MiningParams, SelfTrainConfig, Window


@dataclass(frozen=True)
class NormalSelection:
    keep: np.ndarray  # bool [N]: frames mined as normal (runs of at least min_run)
    rs: np.ndarray  # normalized RS over the candidates (nan elsewhere)
    fs: np.ndarray  # normalized FS over the candidates (nan elsewhere)
    hinge: float  # T


def long_runs(selected: np.ndarray, min_run: int) -> np.ndarray:
    """`selected` with every run of consecutive True shorter than `min_run` set to False."""
    selected = np.asarray(selected, dtype=bool)
    out = np.zeros_like(selected)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], selected.astype(np.int8), [0]])))
    for start, end in zip(edges[::2], edges[1::2], strict=True):
        if end - start >= min_run:
            out[start:end] = True
    return out


def abnormal_frames(scores: np.ndarray, params: MiningParams) -> np.ndarray:
    """bool [N]: frames scored at or above eta_s, in runs of at least min_run."""
    return long_runs(np.asarray(scores) >= params.eta_s, params.min_run)


def _mean_above(error_maps: np.ndarray, threshold: float) -> np.ndarray:
    """Per frame: the mean error over pixels above `threshold` (0 where none is)."""
    above = error_maps > threshold
    count = above.reshape(len(error_maps), -1).sum(1)
    total = np.where(above, error_maps, 0.0).reshape(len(error_maps), -1).sum(1)
    return np.where(count > 0, total / np.maximum(count, 1), 0.0)


def _min_max(values: np.ndarray) -> np.ndarray:
    span = values.max() - values.min()
    return (values - values.min()) / span if span > 0 else np.zeros_like(values)


def normal_frames(scores: np.ndarray, error_maps: np.ndarray, params: MiningParams) -> NormalSelection:
    """The paper's normal-frame rule over one window; error_maps float [N, H, W]."""
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    rs_all = np.full(n, np.nan)
    fs_all = np.full(n, np.nan)
    candidates = np.flatnonzero(scores < params.eta_s)
    if len(candidates) == 0:
        return NormalSelection(np.zeros(n, dtype=bool), rs_all, fs_all, 0.0)
    maps = np.asarray(error_maps, dtype=np.float64)[candidates]
    rs = _mean_above(maps, params.eta_p)
    fs = _mean_above(maps, float(rs.min()))  # dynamic eta_p: misses are the minority
    rs, fs = _min_max(rs), _min_max(fs)
    mean_rs = float(rs.mean())
    hinge = params.alpha * (mean_rs - mean_rs**2)
    selected = np.zeros(n, dtype=bool)
    selected[candidates[fs < hinge]] = True
    rs_all[candidates], fs_all[candidates] = rs, fs
    return NormalSelection(long_runs(selected, params.min_run), rs_all, fs_all, hinge)


def pixel_masks(error_maps: np.ndarray, eta_a: float, reference_scale: float | None = None) -> np.ndarray:
    """float32 [N, H, W]: 1 where a pixel may be learned, 0 where its normalized error is >= eta_a.

    Errors are normalized per frame (min-max, the paper's rule) or, given `reference_scale`, divided by
    it (e.g. a high quantile of pixel errors on normal footage), so that a frame whose error is
    everywhere small hides nothing and an anomalous object stands out against normal statistics.
    """
    maps = np.asarray(error_maps, dtype=np.float32)
    if reference_scale is not None:
        normalized = maps / max(reference_scale, 1e-12)
    else:
        low = maps.min(axis=(1, 2), keepdims=True)
        span = maps.max(axis=(1, 2), keepdims=True) - low
        normalized = np.where(span > 0, (maps - low) / np.where(span > 0, span, 1), 0.0)
    return (normalized < eta_a).astype(np.float32)


ROBUST_QUANTILE = 0.02  # the localized rule's "min" and "max": a few outliers do not set the scale


def localized_normal_frames(scores: np.ndarray, params: MiningParams, alpha: float) -> np.ndarray:
    """bool [N]: the paper's hinge applied to the detector's own localized frame score instead of FS.

    Candidates are frames with S < eta_s; their scores are normalized to [0, 1] over the candidates by
    their 2nd and 98th percentiles (a min-max that the stream's very first frames, scored without any
    motion, or one odd frame cannot stretch), X is their mean and T = alpha * (X - X^2); a candidate is
    kept when its normalized score is below T. The localized score ranks frames far better than the
    paper's FS, so a stricter alpha keeps a smaller but cleaner set (see design notes, section 7).
    """
    scores = np.asarray(scores, dtype=np.float64)
    candidates = np.flatnonzero(scores < params.eta_s)
    selected = np.zeros(len(scores), dtype=bool)
    if len(candidates) == 0:
        return selected
    low, high = np.quantile(scores[candidates], [ROBUST_QUANTILE, 1.0 - ROBUST_QUANTILE])
    normalized = (
        np.clip((scores[candidates] - low) / (high - low), 0.0, 1.0)
        if high > low
        else np.zeros(len(candidates))
    )
    mean = float(normalized.mean())
    selected[candidates[normalized < alpha * (mean - mean**2)]] = True
    return long_runs(selected, params.min_run)


def runs_within_segments(selected: np.ndarray, segments: np.ndarray, min_run: int) -> np.ndarray:
    """`long_runs` where a run may not cross a change of `segments` (a reconnect or a gap in the stream)."""
    selected = np.asarray(selected, dtype=bool)
    out = np.zeros_like(selected)
    for start, end in segment_spans(segments):
        out[start:end] = long_runs(selected[start:end], min_run)
    return out


def segment_spans(segments: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of each run of equal consecutive values of `segments`."""
    segments = np.asarray(segments)
    edges = np.flatnonzero(np.diff(segments)) + 1
    return list(zip(np.r_[0, edges].tolist(), np.r_[edges, len(segments)].tolist(), strict=True))


def segment_mean(values: np.ndarray, segments: np.ndarray, frames: int) -> np.ndarray:
    """The centered mean over `frames` consecutive values, within each segment (its ends repeated)."""
    values = np.asarray(values, dtype=np.float64)
    if frames <= 1:
        return values
    out = np.empty_like(values)
    kernel = np.ones(frames) / frames
    for start, end in segment_spans(segments):
        padded = np.pad(values[start:end], (frames // 2, (frames - 1) // 2), mode="edge")
        out[start:end] = np.convolve(padded, kernel, mode="valid")
    return out


def near(selected: np.ndarray, segments: np.ndarray, margin: int) -> np.ndarray:
    """bool [N]: frames within `margin` frames of a selected one in the same segment (itself included)."""
    selected = np.asarray(selected, dtype=bool)
    segments = np.asarray(segments)
    out = selected.copy()
    for shift in range(1, margin + 1):
        same = segments[shift:] == segments[:-shift]
        out[shift:] |= selected[:-shift] & same
        out[:-shift] |= selected[shift:] & same
    return out


def apply_labels(
    normal: np.ndarray, abnormal: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Operator labels override mining; labels int [N]: 1 abnormal, 0 normal, -1 unlabelled.

    A frame labelled abnormal is never trained as normal; one labelled normal is, even where the detector
    disagreed (a false positive learned away at that place). Labelled frames need no run of FNmin.
    """
    labels = np.asarray(labels)
    normal = (np.asarray(normal, dtype=bool) & (labels != 1)) | (labels == 0)
    abnormal = (np.asarray(abnormal, dtype=bool) & (labels != 0)) | (labels == 1)
    return normal, abnormal


@dataclass
class WindowEvidence:
    """The model in service's view of a window: what mining works on."""

    # float [N]: scores as the camera's scorer normalizes them (without the calibration's level: that
    # holds the site's scores where they were for its operators, not where the model finds them), in [0, 1]
    scores: np.ndarray
    z: np.ndarray  # float [N]: the raw scores in the model's own z units (its calibration without its level,
    # not the camera's)
    maps: np.ndarray  # float16 [N, H/2, W/2]: anomaly maps at the resolution the service stores them


def half_maps(
    detector: Detector, stream_maps: np.ndarray, cameras: list[str | None] | None = None
) -> np.ndarray:
    """float16 [B, H/2, W/2]: the anomaly maps of a batch's stream maps (each in its camera's statistics,
    `cameras`), as mining keeps them."""
    height, width = detector.info.height // 2, detector.info.width // 2
    return np.stack(
        [
            cv2.resize(anomaly, (width, height), interpolation=cv2.INTER_AREA)
            for anomaly in anomaly_maps(detector, stream_maps, cameras)
        ]
    ).astype(np.float16)


def window_evidence(detector: Detector, window: Window) -> WindowEvidence:
    """Scores and anomaly maps of every frame of the window under one model (the served scores of a
    window may come from several models, and lag an anomaly by the smoothing). The maps are kept at half
    resolution: a 3000-frame window fits in memory.

    Raw scores are normalized as a camera's scorer does (models/scoring/camera.CameraScorer, from the start of
    each segment): the model's calibration, then more and more the camera's own level. A camera that was
    moved or re-lit scores everything higher under the calibration alone; mined on that scale, every
    frame would be abnormal and the model could never learn the new view. The motion baseline has no
    calibration: its frames are normalized by the window's own statistics."""
    info = detector.info
    raw = np.empty(len(window), dtype=np.float64)
    maps = np.empty((len(window), info.height // 2, info.width // 2), dtype=np.float16)
    for start in range(0, len(window), BATCH):
        part = np.arange(start, min(start + BATCH, len(window)))
        stream_maps, cameras = window.stream_maps(detector, part), window.camera_of(part)
        raw[part] = raw_scores(detector, stream_maps, cameras)
        maps[part] = half_maps(detector, stream_maps, cameras)
    if not info.metadata.get("calibration"):
        z = model_z = ScoreCalibration.fit(raw).z(raw)
    else:
        # each frame in its camera's calibration (the site's, or the camera's own view's)
        model_z = np.empty(len(window), dtype=np.float64)
        z = np.empty(len(window), dtype=np.float64)
        for start, end in segment_spans(window.segments):
            camera = window.camera_of(np.array([start]))[0]
            calibration = replace(
                ScoreCalibration.from_dict(info.for_camera(camera).metadata["calibration"]), level=0.0
            )
            model_z[start:end] = calibration.z(raw[start:end])
            scorer = CameraScorer(calibration)
            z[start:end] = [scorer.normalize(float(value)) for value in raw[start:end]]
    return WindowEvidence(score_of_z(z, ScorerConfig()).astype(np.float32), model_z, maps)


def consecutive_runs(indices: np.ndarray, segments: np.ndarray) -> list[np.ndarray]:
    """Consecutive runs (same segment) of sorted frame indices."""
    if len(indices) == 0:
        return []
    breaks = np.flatnonzero((np.diff(indices) != 1) | (np.diff(segments[indices]) != 0)) + 1
    return np.split(indices, breaks)


def run_videos(window: Window, indices: np.ndarray) -> dict[str, np.ndarray]:
    """The consecutive runs of `indices` as videos (uint8 [T, H, W] each), for fitting a detector."""
    return {f"run{i}": window.frames[run] for i, run in enumerate(consecutive_runs(indices, window.segments))}


def run_cameras(window: Window, indices: np.ndarray) -> dict[str, str]:
    """The camera of each of `run_videos`' runs, where the window names its cameras (a run never crosses
    from one camera to the next): a fit to them learns each camera's own view."""
    runs = consecutive_runs(indices, window.segments)
    named = {f"run{i}": window.camera_of(run[:1])[0] for i, run in enumerate(runs)}
    return {run: camera for run, camera in named.items() if camera is not None}


def _holdout_split(normal: np.ndarray, block: int, share: float) -> tuple[np.ndarray, np.ndarray]:
    """Held-out and training normal frames: every k-th block of `block` consecutive normal frames is held
    out, so that held-out frames are not near-copies of training ones."""
    indices = np.flatnonzero(normal)
    if share <= 0 or len(indices) < 2 * block:
        return np.empty(0, dtype=int), indices
    every = max(2, round(1 / share))
    held = (np.arange(len(indices)) // block) % every == every - 1
    return indices[held], indices[~held]


def _dilated(masks: np.ndarray, margin: int) -> np.ndarray:
    """Masks with every masked region grown by `margin` pixels: the edges of an anomaly are not learned."""
    if margin <= 0 or len(masks) == 0:  # a window where nothing was mined
        return masks
    kernel = np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)
    return np.stack([cv2.erode(mask, kernel) for mask in masks])


def mine(
    window: Window, evidence: WindowEvidence, config: SelfTrainConfig, eta_s: float | None = None
) -> MinedSet:
    """The confident frames of a window and their pixel masks (see the module doc)."""
    params = replace(config.mining, eta_s=eta_s) if eta_s is not None else config.mining
    single = replace(params, min_run=1)  # runs are cut at segment changes below
    scores, maps = evidence.scores, evidence.maps
    abnormal = runs_within_segments(scores >= params.eta_s, window.segments, params.min_run)
    if config.policy == "paper":
        candidates = normal_frames(scores, maps, single).keep
    else:
        # on the score as the service smooths it (one noisy frame does not break a run), and not next to
        # a mined anomaly: an event's onset and end score lower than its peak
        smoothed = segment_mean(scores, window.segments, ScorerConfig().smoothing)
        candidates = localized_normal_frames(smoothed, single, config.localized_alpha)
        candidates &= ~near(abnormal, window.segments, params.min_run)
    normal = runs_within_segments(candidates, window.segments, params.min_run)
    labelled_normal = np.zeros(len(window), dtype=bool)
    if window.labels is not None:
        normal, abnormal = apply_labels(normal, abnormal, window.labels)
        labelled_normal = window.labels == 0
    if window.accepted is not None and config.labels.accepted_exception:
        # a kind of event the site accepts is learned by the per-cell exception alone
        # (models/selftrain/feedback.py): learned as normal footage, its speed would silence other events
        # where it went, and it is no anomaly to mine either
        normal, abnormal = normal & ~window.accepted, abnormal & ~window.accepted
        labelled_normal &= ~window.accepted
    normal &= ~abnormal
    holdout, train_normal = _holdout_split(normal & ~labelled_normal, params.min_run, config.holdout_share)
    train_normal = np.union1d(train_normal, np.flatnonzero(labelled_normal))
    reference_pool = maps[train_normal] if len(train_normal) else maps
    reference = (
        float(np.quantile(reference_pool.astype(np.float32), config.mask_quantile)) if len(maps) else 1.0
    )
    # the paper keeps the abnormal frames too, their anomalous pixels masked: the rest of such a frame
    # (the background, the people around) is as normal as any
    train = np.union1d(train_normal, np.flatnonzero(abnormal))
    masks = _dilated(pixel_masks(maps[train], params.eta_a, max(reference, 1e-3)), config.mask_margin)
    masks[labelled_normal[train]] = 1.0  # the operator says all of it is normal: learn it whole
    # each held-out block's first half refits the statistics, its second half validates
    half = (np.arange(len(holdout)) % params.min_run) >= params.min_run // 2
    return MinedSet(normal, abnormal, holdout[~half], holdout[half], train, masks, reference)
