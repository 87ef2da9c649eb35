"""Self-training on a site's own stream: one cycle mines a scored window, adapts the detector, validates.

The same `run_cycle` serves the retraining worker (windows read from Redis) and `vigil eval --mode online`
(windows of a dataset streamed through the service's scoring), so that what is measured is what runs.

A cycle, over a window of consecutive frames with the scores the service gave them:
1. anomaly maps of the window under the model in service;
2. mining (models/mining.py): an abnormal set (S >= eta_s, precise in every trial) and a normal set (the
   paper's rule, or by default its hinge over the localized score, smoothed as the service smooths it,
   away from mined anomalies), runs of >= FNmin frames, operator labels overriding both; pixel masks
   calibrated against the anomaly maps of the mined normal frames;
3. adaptation, starting from the current model, on the mined frames, normal and abnormal, with their
   anomalous pixels masked out (the paper's masked retraining, for each stream):
   - motion: the normal speed per pixel, a running mean in which the current one counts as
     `prior_frames` frames;
   - appearance: the memory of normal cells, a coreset of the current memory (the replay: nothing
     learned before is forgotten unless the site's new cells cover it) and the unmasked cells of the
     mined frames; the masked cells (an anomaly, with a margin) never enter it;
   - prediction (when the detector has it): masked L1 fine-tuning of the U-Net, with replay of earlier
     normal clips and pseudo anomalies, bounded in steps and seconds;
   - ordinal (added once operators have labelled an anomaly): the scoring head, one more round of
     self-trained ordinal regression on the cycle's pseudo labels and the operators' labels
     (models/feedback.py);
   then each stream's statistics refitted on one half of the held-out normal runs;
   and, where the model in service finds the site's held-out normal frames far from normal (another
   scene, a camera turned round), a second candidate: its streams fitted afresh to the mined normal
   frames (models/fitting.py, as a cold start fits them);
4. validation against the model in service on the other half and on the mined anomalies: the candidate
   must not score held-out normal frames worse, must still set the mined anomalies apart from them, and
   must still react to pseudo anomalies pasted into them. When the ordinal head's round is refused, the
   cycle's candidate without that round is validated in its place. Of an accepted adaptation and an
   accepted fresh fit, the one that sets the mined anomalies further apart from the normal frames serves.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from models.detector import Detector
from models.feedback import OrdinalConfig, cell_examples, train_ordinal, with_ordinal
from models.fitting import FitConfig, coreset, extend_coreset, fit_detector, frame_features
from models.flow import clip_speeds
from models.mining import (
    MiningParams,
    apply_labels,
    localized_normal_frames,
    near,
    normal_frames,
    pixel_masks,
    runs_within_segments,
    segment_mean,
    segment_spans,
)
from models.pseudo import ClipSampler, PseudoAnomalyConfig
from models.runtime import TorchDetector, model_kind, model_metadata
from models.scoring import (
    CameraScorer,
    ScoreCalibration,
    ScorerConfig,
    combined_scores,
    score_of_z,
    stream_patch_scores,
)
from models.stream import anomaly_maps, padded_clips, raw_scores
from models.streams import STREAM_MIN_SCALE, DetectorNet

log = logging.getLogger(__name__)

MiningPolicy = Literal["localized", "paper"]
BATCH = 32


@dataclass(frozen=True)
class SelfTrainConfig:
    policy: MiningPolicy = "localized"
    mining: MiningParams = field(default_factory=MiningParams)
    localized_alpha: float = 1.0  # hinge sensitivity of the localized policy (stricter than the paper's 2)
    mask_quantile: float = 0.99  # anomaly-map quantile of mined normal frames that the eta_a mask scales to
    mask_margin: int = 4  # masked regions grown by this many anomaly-map pixels (half resolution)
    holdout_share: float = 0.2  # of mined normal runs, kept out of adaptation (statistics and validation)
    min_normal_frames: int = 30  # fewer confident normal frames: no adaptation this cycle
    prior_frames: int = 1000  # the current normal speed and statistics count as this many frames
    cells_per_frame: int = 64  # unmasked cells of each mined frame offered to the appearance memory
    memory_frames: int = 600  # at most this many of them (spread over the window): bounds a cycle's time
    # the memory grows by the offered cells it covers worst, at most this many a cycle, up to
    # `memory_max_cells` (then a coreset of it and the offered cells, of that size): what it covered stays
    memory_growth: int = 0
    memory_max_cells: int = 2048
    # a second candidate, the model's streams fitted afresh to the mined normal frames not held out: when
    # the model scores the held-out ones at a mean z (its own, without the level a swap holds: see
    # refit_statistics) above `refit_normal_z` (the site no longer looks like its footage: 2.8-3.3 on Ped2
    # turned or moved, 1.1-1.7 unchanged, where a fresh fit costs the streamed AUC 0.008) and there are at
    # least `refit_min_frames` (0: never)
    refit_normal_z: float = 2.0
    refit_min_frames: int = 50  # five runs of FNmin
    steps: int = 300  # prediction stream: fine-tuning steps per cycle
    max_seconds: float = 150.0  # and at most this long
    batch_size: int = 16
    crop_fraction: float = 0.5
    learning_rate: float = 5e-4
    replay_share: float = 0.5  # of each batch, clips of earlier normal footage (when there is some)
    normal_tolerance: float = 0.25  # z units the held-out normal frames may score higher than before
    separation_ratio: float = 0.9  # anomalies must stand out at least this much as before
    # the ordinal scoring head: added once operators have labelled an anomaly (or always, or never)
    ordinal_head: Literal["labels", "always", "never"] = "labels"
    ordinal: OrdinalConfig = field(default_factory=OrdinalConfig)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Window:
    """Consecutive frames of a camera (or several cameras' in a row, see models/online.concat_windows)."""

    frames: np.ndarray  # uint8 [N, H, W] at the detector's input size
    segments: np.ndarray  # int [N]: frame history restarts where this changes (reconnect, gap)
    labels: np.ndarray | None = None  # int [N]: operator labels, 1 abnormal, 0 normal, -1 none

    def __len__(self) -> int:
        return len(self.frames)

    def clips(self, indices: np.ndarray, history: int) -> np.ndarray:
        """uint8 [len(indices), history + 1, H, W]: each frame with its past, padded as CameraStream does."""
        starts = np.r_[0, np.flatnonzero(np.diff(self.segments)) + 1]
        first = starts[np.searchsorted(starts, indices, side="right") - 1]
        return padded_clips(self.frames, np.asarray(indices), history, first)


@dataclass
class MinedSet:
    normal: np.ndarray  # bool [N]
    abnormal: np.ndarray  # bool [N]
    calibration: np.ndarray  # int: held-out normal frames the candidate's statistics are refitted on
    validation: np.ndarray  # int: held-out normal frames the candidate is validated on
    train: np.ndarray  # int: frames the detector adapts to: normal ones not held out, and abnormal ones
    masks: np.ndarray  # float32 [len(train), h, w] (anomaly-map resolution): 1 where a pixel is learned
    reference_scale: float

    def counts(self) -> dict[str, int]:
        return {
            "normal": int(self.normal.sum()),
            "abnormal": int(self.abnormal.sum()),
            "holdout": len(self.calibration) + len(self.validation),
            "train": len(self.train),
        }


@dataclass
class WindowEvidence:
    """The model in service's view of a window: what mining works on."""

    # float [N]: scores as the camera's scorer normalizes them (without the calibration's level: that
    # holds the site's scores where they were for its operators, not where the model finds them), in [0, 1]
    scores: np.ndarray
    z: np.ndarray  # float [N]: the raw scores in the model's own z units (its calibration without its level,
    # not the camera's)
    maps: np.ndarray  # float16 [N, H/2, W/2]: anomaly maps at the resolution the service stores them


def window_evidence(detector: Detector, window: Window) -> WindowEvidence:
    """Scores and anomaly maps of every frame of the window under one model (the served scores of a
    window may come from several models, and lag an anomaly by the smoothing). The maps are kept at half
    resolution: a 3000-frame window fits in memory.

    Raw scores are normalized as a camera's scorer does (models/scoring.CameraScorer, from the start of
    each segment): the model's calibration, then more and more the camera's own level. A camera that was
    moved or re-lit scores everything higher under the calibration alone; mined on that scale, every
    frame would be abnormal and the model could never learn the new view. The motion baseline has no
    calibration: its frames are normalized by the window's own statistics."""
    info = detector.info
    calibration = (
        replace(ScoreCalibration.from_dict(info.metadata["calibration"]), level=0.0)
        if info.metadata.get("calibration")
        else None
    )
    height, width = info.height // 2, info.width // 2
    raw = np.empty(len(window), dtype=np.float64)
    maps = np.empty((len(window), height, width), dtype=np.float16)
    for start in range(0, len(window), BATCH):
        part = np.arange(start, min(start + BATCH, len(window)))
        stream_maps = detector.stream_maps(window.clips(part, info.history))
        raw[part] = raw_scores(detector, stream_maps)
        for row, anomaly in zip(part, anomaly_maps(detector, stream_maps), strict=True):
            maps[row] = cv2.resize(anomaly, (width, height), interpolation=cv2.INTER_AREA)
    model_z = (calibration or ScoreCalibration.fit(raw)).z(raw)
    if calibration is None:
        z = model_z
    else:
        z = np.empty(len(window), dtype=np.float64)
        for start, end in segment_spans(window.segments):
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
    if margin <= 0:
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


# ---------------------------------------------------------------- adaptation
def _full_masks(masks: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.stack([cv2.resize(m, (width, height), interpolation=cv2.INTER_NEAREST) for m in masks])


def _adapt_motion(candidate: DetectorNet, window: Window, mined: MinedSet, config: SelfTrainConfig) -> None:
    """The normal speed per pixel: the current one (as `prior_frames` frames) and the masked speeds of the
    mined normal frames."""
    motion = candidate.motion
    assert motion is not None
    detector = candidate.config
    total = np.zeros((detector.height, detector.width), dtype=np.float64)
    weight = np.zeros_like(total)
    for start in range(0, len(mined.train), BATCH):
        part = mined.train[start : start + BATCH]
        speed = clip_speeds(window.clips(part, detector.history), detector.flow)
        mask = _full_masks(mined.masks[start : start + BATCH], detector.height, detector.width)
        total += (speed * mask).sum(0)
        weight += mask.sum(0)
    prior = float(config.prior_frames)
    old = motion.normal_speed.double().numpy()
    motion.normal_speed.copy_(torch.from_numpy(((prior * old + total) / (prior + weight)).astype(np.float32)))


def _adapt_appearance(
    candidate: DetectorNet, window: Window, mined: MinedSet, config: SelfTrainConfig, rng: np.random.Generator
) -> int:
    """The memory of normal cells, grown by the mined frames' unmasked cells it covers worst (or, once it
    is full, a coreset of the current one and those cells). Returns how many new cells were offered."""
    appearance = candidate.appearance
    assert appearance is not None
    # rows of mined.train (and of its masks), evenly spread: the backbone is most of a cycle's time
    count = min(len(mined.train), config.memory_frames)
    rows = np.unique(np.linspace(0, len(mined.train) - 1, count).round().astype(int))
    current = appearance.cells.clone()
    offered = [current[:0]]
    for start in range(0, len(rows), BATCH):
        part = rows[start : start + BATCH]
        features = frame_features(candidate, window.frames[mined.train[part]]).float()  # [B, C, h, w]
        masks = torch.from_numpy(mined.masks[part])[:, None]
        # a cell is learned only when none of its pixels is masked
        usable = -F.adaptive_max_pool2d(-masks, features.shape[-2:])[:, 0] > 0.5
        cells = features.permute(0, 2, 3, 1)[usable]
        counts = usable.flatten(1).sum(1).tolist()
        picks: list[np.ndarray] = []
        offset = 0
        for count in counts:
            take = min(count, config.cells_per_frame)
            picks.append(offset + rng.choice(count, take, replace=False))
            offset += count
        if picks:
            offered.append(cells[torch.from_numpy(np.concatenate(picks))])
    pool = torch.cat(offered)
    room = min(config.memory_growth, config.memory_max_cells - len(current))
    if room > 0:
        candidate.remember(extend_coreset(current, pool, room))
    else:
        candidate.remember(coreset(torch.cat([current, pool]), len(current), rng))
    return len(pool)


def _fine_tune_prediction(
    candidate: DetectorNet,
    window: Window,
    mined: MinedSet,
    replay: list[np.ndarray],
    config: SelfTrainConfig,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """Masked L1 fine-tuning of the U-Net on the mined frames, with replayed normal clips."""
    predictor = candidate.prediction
    assert predictor is not None
    predictor.train()
    network = predictor.config
    history = network.history
    optimizer = torch.optim.AdamW(predictor.parameters(), lr=config.learning_rate, weight_decay=1e-4)
    sampler = ClipSampler(replay, history, PseudoAnomalyConfig(), rng) if replay else None
    n_replay = round(config.batch_size * config.replay_share) if sampler is not None else 0
    n_mined = config.batch_size - n_replay
    height, width = window.frames.shape[1:]
    unit = 2 * network.unshuffle
    crop_h = max(unit, unit * round(height * min(config.crop_fraction, 1.0) / unit))
    crop_w = max(unit, unit * round(width * min(config.crop_fraction, 1.0) / unit))
    started, steps, loss_ema = time.monotonic(), 0, float("nan")
    while steps < config.steps and time.monotonic() - started < config.max_seconds:
        pick = rng.integers(0, len(mined.train), n_mined)
        clips = window.clips(mined.train[pick], history)
        masks = _full_masks(mined.masks[pick], height, width)
        tops = rng.integers(0, height - crop_h + 1, n_mined)
        lefts = rng.integers(0, width - crop_w + 1, n_mined)
        cuts = [np.s_[..., y : y + crop_h, x : x + crop_w] for y, x in zip(tops, lefts, strict=True)]
        clip_t = (
            torch.from_numpy(np.stack([c[cut] for c, cut in zip(clips, cuts, strict=True)])).float() / 255
        )
        mask = torch.from_numpy(np.stack([m[cut] for m, cut in zip(masks, cuts, strict=True)]))
        prediction, target = predictor.predict(clip_t, list(zip(tops.tolist(), lefts.tolist(), strict=True)))
        loss = ((prediction - target).abs() * mask).sum() / mask.sum().clamp(min=1.0)
        if sampler is not None:
            batch, offsets = sampler.batch(n_replay, (crop_h, crop_w))
            replay_prediction, replay_target = predictor.predict(
                torch.from_numpy(batch).float() / 255, offsets
            )
            share = n_replay / config.batch_size
            loss = (1 - share) * loss + share * F.l1_loss(replay_prediction, replay_target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps += 1
        value = float(loss.detach())
        loss_ema = value if np.isnan(loss_ema) else 0.95 * loss_ema + 0.05 * value
    predictor.eval()
    # its mean error per pixel, refitted the same way as the normal speed
    total = torch.zeros_like(predictor.baseline, dtype=torch.float64)
    weight = torch.zeros_like(total)
    old = predictor.baseline.clone()
    with torch.inference_mode():
        predictor.baseline.zero_()
        for start in range(0, len(mined.train), BATCH):
            part = mined.train[start : start + BATCH]
            mask = torch.from_numpy(_full_masks(mined.masks[start : start + BATCH], height, width)).double()
            total += (predictor(torch.from_numpy(window.clips(part, history))).double() * mask).sum(0)
            weight += mask.sum(0)
        prior = float(config.prior_frames)
        predictor.baseline.copy_(((prior * old.double() + total) / (prior + weight)).float())
    return {"steps": steps, "seconds": round(time.monotonic() - started, 2), "loss": loss_ema}


def _blend(old: ScoreCalibration, new: ScoreCalibration, prior: float, count: int) -> ScoreCalibration:
    weight = count / (prior + count)
    return ScoreCalibration(
        median=(1 - weight) * old.median + weight * new.median,
        scale=max((1 - weight) * old.scale + weight * new.scale, 1e-6),
        level=old.level,
    )


def refit_statistics(
    candidate: TorchDetector, current: Detector, window: Window, frames: np.ndarray, prior_frames: int
) -> tuple[dict[str, Any], ScoreCalibration]:
    """The candidate's stream statistics and calibration, refitted on held-out normal `frames` of the window.

    Each stream's statistics are blended from the parent's (as `prior_frames` frames) and the frames'
    (those of a stream new in the candidate are the frames'). The
    calibration's median and spread are blended the same way, and its level (a z added to every
    normalized score) set so that the frames score the same z under the candidate as under the model in
    service: a swap does not move the score of the site's normal footage (nor the meaning of the alert
    threshold), while what the candidate sets apart better scores higher. A level, not a moved median: a
    camera's scorer blends the camera's own statistics into the calibration's, and would pull a moved
    median back, and the camera's scores would drift away from that level over each video (see the
    README). Also returns the calibration before that (blended, with the parent's level): the frame
    of reference in which validation compares the two models on normal frames (the calibration with its
    new level when the candidate has a stream its parent lacks).
    """
    info = candidate.info
    old_calibration = ScoreCalibration.from_dict(info.metadata["calibration"])
    if len(frames) == 0:
        kept = {"stream_stats": info.metadata["stream_stats"], "calibration": info.metadata["calibration"]}
        return kept, old_calibration
    clips = window.clips(frames, info.history)
    patch = np.concatenate(
        [
            stream_patch_scores(candidate.stream_maps(clips[i : i + BATCH]), info.patch)
            for i in range(0, len(clips), BATCH)
        ]
    )
    parent = info.metadata.get("stream_stats") or {}
    new_streams = [name for name in info.streams if name not in parent]
    stats = []
    for index, name in enumerate(info.streams):
        fitted = ScoreCalibration.fit(patch[:, index], STREAM_MIN_SCALE.get(name, 0.0))
        # a stream new in this cycle (the ordinal head) has no statistics to blend with
        stats.append(
            _blend(ScoreCalibration.from_dict(parent[name]), fitted, prior_frames, len(frames))
            if name in parent
            else fitted
        )
    raw = combined_scores(patch, stats)
    blended = _blend(old_calibration, ScoreCalibration.fit(raw), prior_frames, len(frames))
    served_z = float(np.median(_z(current, _raw(current, clips))))
    own_z = float(np.median(replace(blended, level=0.0).z(raw)))
    calibration = replace(blended, level=served_z - own_z)
    refitted = {
        "stream_stats": {name: stat.to_dict() for name, stat in zip(info.streams, stats, strict=True)},
        "calibration": calibration.to_dict(),
    }
    # a stream new in the candidate adds a term its parent's raw score lacks: no common frame of reference,
    # so its normal level is the one the calibration frames set
    return refitted, calibration if new_streams else blended


def _refit(
    model: DetectorNet,
    window: Window,
    evidence: WindowEvidence,
    mined: MinedSet,
    config: SelfTrainConfig,
    report: dict[str, Any],
) -> tuple[DetectorNet, dict[str, Any]] | None:
    """The model's streams fitted afresh, as a cold start fits them, to the cycle's mined normal frames
    that are not held out, and the fit's statistics. Nothing the model knew carries over: where the site
    no longer looks like its footage (another scene, a camera turned round), that knowledge is in the way,
    and blending it in (the adaptation) wins back little. None when the model in service finds the site's
    held-out normal frames normal (their mean z, written to `report`, is at most `refit_normal_z`), when
    too few frames, or when the model has the prediction stream (a U-Net's training does not fit in a
    cycle)."""
    site_z = float(np.mean(evidence.z[np.union1d(mined.calibration, mined.validation)]))
    report["held_out_normal_z"] = round(site_z, 3)
    frames = mined.train[mined.normal[mined.train]]
    if (
        site_z <= config.refit_normal_z
        or config.refit_min_frames <= 0
        or len(frames) < config.refit_min_frames
        or model.prediction is not None
    ):
        return None
    structure = replace(model.config, streams=tuple(s for s in model.config.streams if s != "ordinal"))
    fitted = fit_detector(
        run_videos(window, frames), structure, FitConfig(seed=config.seed, max_frames=config.memory_frames)
    )
    return fitted.model, fitted.metadata_stats()


# ---------------------------------------------------------------- validation
@dataclass
class Validation:
    accepted: bool
    reason: str
    metrics: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "reason": self.reason, **self.metrics}


def _raw(detector: Detector, clips: np.ndarray) -> np.ndarray:
    out = [
        raw_scores(detector, detector.stream_maps(clips[start : start + BATCH]))
        for start in range(0, len(clips), BATCH)
    ]
    return np.concatenate(out) if out else np.empty(0, dtype=np.float32)


def _z(detector: Detector, raw: np.ndarray, calibration: ScoreCalibration | None = None) -> np.ndarray:
    calibration = calibration or ScoreCalibration.from_dict(detector.info.metadata["calibration"])
    return calibration.z(raw)


def validate(
    current: Detector,
    candidate: Detector,
    window: Window,
    mined: MinedSet,
    config: SelfTrainConfig,
    normal_reference: ScoreCalibration | None = None,
) -> Validation:
    """The candidate against the model in service on held-out mined normal frames, on the mined anomalies
    and on pseudo anomalies pasted into the held-out frames.

    Scores are compared as each model's own robust z-scores, the scale alerts are raised on. The held-out
    normal frames' level is compared in `normal_reference` (the candidate's calibration before the shift
    that keeps normal scores continuous across a swap, see refit_statistics; that shift would make the
    levels equal by construction). Rejected: non-finite output, held-out normal frames scored higher by
    more than `normal_tolerance`, mined or pseudo anomalies set apart from them less than
    `separation_ratio` times as well as before.
    """
    history = current.info.history
    clips = window.clips(mined.validation, history)
    rng = np.random.default_rng(config.seed + 1)
    pasted = clips.copy()
    sampler = ClipSampler([window.frames], history, PseudoAnomalyConfig(), rng)
    for clip in pasted:
        sampler.paste_patch(clip, include_current=True)
    abnormal = np.flatnonzero(mined.abnormal)
    anomalies = window.clips(abnormal[:: max(1, len(abnormal) // 200)], history)
    metrics: dict[str, float] = {}
    for name, detector in (("current", current), ("candidate", candidate)):
        normal_raw = _raw(detector, clips)
        normal_z = _z(detector, normal_raw)
        pseudo_z = _z(detector, _raw(detector, pasted))
        abnormal_z = _z(detector, _raw(detector, anomalies))
        if not all(np.isfinite(z).all() for z in (normal_z, pseudo_z, abnormal_z)):
            return Validation(False, f"{name} model scores are not finite", metrics)
        reference = normal_reference if name == "candidate" else None
        metrics[f"{name}_normal_z"] = float(np.mean(_z(detector, normal_raw, reference)))
        metrics[f"{name}_separation"] = float(np.median(pseudo_z) - np.median(normal_z))
        if len(anomalies):
            metrics[f"{name}_abnormal_separation"] = float(np.median(abnormal_z) - np.median(normal_z))
    if metrics["candidate_normal_z"] > metrics["current_normal_z"] + config.normal_tolerance:
        return Validation(
            False,
            f"held-out normal frames score higher (z {metrics['candidate_normal_z']:.2f} vs "
            f"{metrics['current_normal_z']:.2f})",
            metrics,
        )
    for key, what in (("separation", "pseudo anomalies"), ("abnormal_separation", "mined anomalies")):
        if f"current_{key}" not in metrics:
            continue
        needed = config.separation_ratio * metrics[f"current_{key}"]
        if metrics[f"candidate_{key}"] < needed:
            return Validation(
                False,
                f"{what} stand out less (separation {metrics[f'candidate_{key}']:.2f} < {needed:.2f})",
                metrics,
            )
    return Validation(True, "better or as good on held-out normal frames; anomalies still stand out", metrics)


# ---------------------------------------------------------------- the cycle
@dataclass
class CycleResult:
    accepted: bool
    reason: str
    report: dict[str, Any]
    model: DetectorNet | None = None  # the candidate when accepted
    metadata: dict[str, Any] | None = None
    mined_normal: np.ndarray | None = None  # bool [N]: the window's mined normal frames
    mined_abnormal: np.ndarray | None = None  # bool [N]: and its mined anomalies


def new_version(streams: list[str]) -> str:
    return f"{model_kind(streams)}-{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%S%fZ')}"


def run_cycle(
    model: DetectorNet,
    metadata: dict[str, Any],
    current: Detector,
    window: Window,
    replay: list[np.ndarray],
    config: SelfTrainConfig,
    eta_s: float | None = None,
) -> CycleResult:
    """One self-training cycle over a window scored by `current` (the served form of `model`)."""
    started = time.monotonic()
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    report: dict[str, Any] = {
        "window_frames": len(window),
        "policy": config.policy,
        "parent": metadata["version"],
    }
    evidence = window_evidence(current, window)
    mined = mine(window, evidence, config, eta_s)
    report["mined"] = mined.counts()
    report["mask_reference"] = mined.reference_scale
    report["mining_s"] = round(time.monotonic() - started, 2)
    normal_count = len(mined.train) - int(mined.abnormal[mined.train].sum())
    if normal_count < config.min_normal_frames or len(mined.validation) == 0:
        reason = (
            f"too few confident normal frames ({int(mined.normal.sum())}; {config.min_normal_frames} needed)"
            if normal_count < config.min_normal_frames
            else f"too few confident normal runs to hold one out ({int(mined.normal.sum())} frames)"
        )
        report["seconds"] = round(time.monotonic() - started, 2)
        return CycleResult(False, reason, report, mined_normal=mined.normal, mined_abnormal=mined.abnormal)
    adapted = copy.deepcopy(model).eval()
    adaptation: dict[str, Any] = {}
    if adapted.motion is not None:
        _adapt_motion(adapted, window, mined, config)
    if adapted.appearance is not None:
        adaptation["cells_offered"] = _adapt_appearance(adapted, window, mined, config, rng)
    if adapted.prediction is not None:
        adaptation["prediction"] = _fine_tune_prediction(adapted, window, mined, replay, config, rng)
    report["training"] = adaptation
    candidates = [adapted]
    labelled_anomalies = window.labels is not None and bool((window.labels == 1).any())
    if adapted.appearance is not None and (
        adapted.ordinal is not None
        or config.ordinal_head == "always"
        or (config.ordinal_head == "labels" and labelled_anomalies)
    ):
        # the head's round is tried first; refused, the cycle's other adaptation may still serve
        scored = with_ordinal(adapted)
        examples = cell_examples(scored, window, mined, evidence.maps, config.ordinal, rng)
        adaptation["ordinal"] = train_ordinal(scored, examples, config.ordinal)
        candidates.insert(0, scored)
    refit_started = time.monotonic()
    refit = _refit(model, window, evidence, mined, config, adaptation)
    if refit is not None:
        adaptation["refit_s"] = round(time.monotonic() - refit_started, 2)
    refit_chosen = False
    report["adaptation_s"] = round(time.monotonic() - started - report["mining_s"], 2)
    for candidate in candidates:
        candidate_metadata, validation = _validated(candidate, metadata, current, window, mined, config)
        report["candidate"] = candidate_metadata["version"]
        report["validation"] = validation.to_dict()
        _log_verdict(window, mined, validation, "ordinal round" if candidate is not adapted else "adapted")
        if validation.accepted:
            break
        if candidate is not adapted:
            report["ordinal_refused"] = validation.reason
    if refit is not None:
        refit_metadata, refit_validation = _validated(
            refit[0], {**metadata, **refit[1]}, current, window, mined, config
        )
        _log_verdict(window, mined, refit_validation, "refit")
        # of two accepted candidates, the one that sets the mined anomalies apart from normal frames more
        refit_chosen = refit_validation.accepted and (
            not validation.accepted
            or refit_validation.metrics.get("candidate_abnormal_separation", 0.0)
            > validation.metrics.get("candidate_abnormal_separation", 0.0)
        )
        report["refit"] = {
            "candidate": refit_metadata["version"],
            "chosen": refit_chosen,
            **refit_validation.to_dict(),
        }
        if refit_chosen:
            candidate, candidate_metadata, validation = refit[0], refit_metadata, refit_validation
            report["candidate"] = refit_metadata["version"]
            report["adaptation_validation"] = report["validation"]  # the adaptation's own verdict
            report["validation"] = refit_validation.to_dict()
    report["seconds"] = round(time.monotonic() - started, 2)
    report["validation_s"] = round(report["seconds"] - report["mining_s"] - report["adaptation_s"], 2)
    if not validation.accepted:
        return CycleResult(
            False, validation.reason, report, mined_normal=mined.normal, mined_abnormal=mined.abnormal
        )
    candidate_metadata["selftrain"]["validation"] = report["validation"]
    candidate_metadata["selftrain"]["refit"] = refit_chosen
    reason = (
        f"fitted afresh to the site's normal frames: {validation.reason}"
        if refit_chosen
        else validation.reason
    )
    return CycleResult(True, reason, report, candidate, candidate_metadata, mined.normal, mined.abnormal)


def _log_verdict(window: Window, mined: MinedSet, validation: Validation, kind: str) -> None:
    log.info(
        "cycle over %d frames: mined %s, %s candidate %s: %s",
        len(window),
        mined.counts(),
        kind,
        "accepted" if validation.accepted else "rejected",
        validation.reason,
    )


def _validated(
    candidate: DetectorNet,
    metadata: dict[str, Any],
    current: Detector,
    window: Window,
    mined: MinedSet,
    config: SelfTrainConfig,
) -> tuple[dict[str, Any], Validation]:
    """The candidate's metadata (statistics refitted) and its validation against the model in service."""
    structure = {**metadata, **model_metadata(candidate.config, {})}  # streams may have grown
    refitted, normal_reference = refit_statistics(
        TorchDetector(candidate, structure), current, window, mined.calibration, config.prior_frames
    )
    candidate_metadata = {
        **structure,
        **refitted,
        "version": new_version(list(candidate.config.streams)),
        "parent": metadata["version"],
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "selftrain": {"config": config.to_dict(), "mined": mined.counts()},
    }
    validation = validate(
        current, TorchDetector(candidate, candidate_metadata), window, mined, config, normal_reference
    )
    return candidate_metadata, validation
