"""Self-training on a site's own stream: one cycle mines a scored window, fine-tunes, refits and validates.

The same `run_cycle` serves the retraining worker (windows read from Redis) and `vigil eval --mode online`
(windows of a dataset streamed through the service's scoring), so that what is measured is what runs.

A cycle, over a window of consecutive frames with the scores the service gave them:
1. error maps of the window under the model in service (full resolution, from its PyTorch weights);
2. mining (models/mining.py): an abnormal set (S >= eta_s, precise in every trial) and a normal set (the
   paper's rule, or by default its hinge over the localized score), runs of >= FNmin frames, operator
   labels overriding both; pixel masks calibrated against the error of the mined normal frames;
3. fine-tuning from the current weights: masked L1 on mined frames (anomalous pixels hidden), a hinge that
   keeps the error of mined anomalies from falling (they must not be learned), and replay of earlier normal
   clips with pseudo anomalies so that the model does not forget; bounded in steps and seconds;
4. refit of the per-pixel error baseline and the score calibration to the site's mined normal frames;
5. validation against the model in service on held-out mined normal runs and pseudo anomalies pasted
   into them: the candidate must not score held-out normal frames worse, and must still react.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np
import torch
from torch.nn import functional as F

from models.detector import Detector
from models.mining import (
    MiningParams,
    apply_labels,
    localized_normal_frames,
    normal_frames,
    pixel_masks,
    runs_within_segments,
)
from models.network import FramePredictor
from models.pseudo import ClipSampler, PseudoAnomalyConfig
from models.runtime import MODEL_KIND, TorchDetector
from models.scoring import ScoreCalibration
from models.stream import raw_scores

log = logging.getLogger(__name__)

MiningPolicy = Literal["localized", "paper"]


@dataclass(frozen=True)
class SelfTrainConfig:
    policy: MiningPolicy = "localized"
    mining: MiningParams = field(default_factory=MiningParams)
    localized_alpha: float = 0.5  # hinge sensitivity of the localized policy (stricter than the paper's 2)
    mask_quantile: float = 0.99  # pixel-error quantile of mined normal frames that the eta_a mask scales to
    steps: int = 300  # fine-tuning steps per cycle
    max_seconds: float = 150.0  # and at most this long
    batch_size: int = 16
    crop_fraction: float = 0.5
    learning_rate: float = 5e-4
    replay_share: float = 0.5  # of each batch, clips of earlier normal footage (when there is some)
    holdout_share: float = 0.2  # of mined normal runs, kept out of training for validation
    min_normal_frames: int = 30  # fewer confident normal frames: no fine-tuning this cycle
    baseline_prior_frames: int = 1000  # the parent's error baseline counts as this many frames
    normal_tolerance: float = 0.25  # z units the held-out normal frames may score higher than before
    separation_ratio: float = 0.9  # pseudo anomalies must stand out at least this much as before
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Window:
    """Consecutive frames of one camera with the scores the service gave them."""

    frames: np.ndarray  # uint8 [N, H, W] at the detector's input size
    segments: np.ndarray  # int [N]: frame history restarts where this changes (reconnect, gap)
    scores: np.ndarray  # float [N]: the served (normalized, smoothed) scores
    labels: np.ndarray | None = None  # int [N]: operator labels, 1 abnormal, 0 normal, -1 none

    def __len__(self) -> int:
        return len(self.frames)

    def clips(self, indices: np.ndarray, history: int) -> np.ndarray:
        """uint8 [len(indices), history + 1, H, W]: each frame with its past, padded as CameraStream does."""
        starts = np.r_[0, np.flatnonzero(np.diff(self.segments)) + 1]
        first = starts[np.searchsorted(starts, indices, side="right") - 1]
        offsets = np.arange(-history, 1)
        picks = np.maximum(np.asarray(indices)[:, None] + offsets[None, :], first[:, None])
        return self.frames[picks]


@dataclass
class MinedSet:
    normal: np.ndarray  # bool [N]
    abnormal: np.ndarray  # bool [N]
    holdout: np.ndarray  # int: normal frames kept for validation
    train: np.ndarray  # int: frames to fine-tune on (normal not held out, and abnormal)
    masks: np.ndarray  # float32 [len(train), H, W]: 1 where a pixel is learned
    reference_scale: float

    def counts(self) -> dict[str, int]:
        return {
            "normal": int(self.normal.sum()),
            "abnormal": int(self.abnormal.sum()),
            "holdout": len(self.holdout),
            "train": len(self.train),
        }


def window_error_maps(detector: Detector, window: Window, batch_size: int = 64) -> np.ndarray:
    """float32 [N, H, W]: the detector's error map of every frame of the window."""
    out = np.empty(window.frames.shape, dtype=np.float32)
    for start in range(0, len(window), batch_size):
        indices = np.arange(start, min(start + batch_size, len(window)))
        out[indices] = detector.error_maps(window.clips(indices, detector.info.history))
    return out


def _holdout_split(normal: np.ndarray, block: int, share: float) -> tuple[np.ndarray, np.ndarray]:
    """Held-out and training normal frames: every k-th block of `block` consecutive normal frames is held
    out, so that validation frames are not near-copies of training ones."""
    indices = np.flatnonzero(normal)
    if share <= 0 or len(indices) < 2 * block:
        return np.empty(0, dtype=int), indices
    every = max(2, round(1 / share))
    held = (np.arange(len(indices)) // block) % every == every - 1
    return indices[held], indices[~held]


def mine(
    window: Window, error_maps: np.ndarray, config: SelfTrainConfig, eta_s: float | None = None
) -> MinedSet:
    """The confident frames of a window and their pixel masks (see the module doc)."""
    params = replace(config.mining, eta_s=eta_s) if eta_s is not None else config.mining
    single = replace(params, min_run=1)  # runs are cut at segment changes below
    abnormal = runs_within_segments(window.scores >= params.eta_s, window.segments, params.min_run)
    if config.policy == "paper":
        candidates = normal_frames(window.scores, error_maps, single).keep
    else:
        candidates = localized_normal_frames(window.scores, single, config.localized_alpha)
    normal = runs_within_segments(candidates, window.segments, params.min_run)
    labelled_normal = np.zeros(len(window), dtype=bool)
    if window.labels is not None:
        normal, abnormal = apply_labels(normal, abnormal, window.labels)
        labelled_normal = window.labels == 0
    holdout, train_normal = _holdout_split(normal & ~labelled_normal, params.min_run, config.holdout_share)
    train_normal = np.union1d(train_normal, np.flatnonzero(labelled_normal))
    train = np.union1d(train_normal, np.flatnonzero(abnormal))
    reference_pool = error_maps[train_normal] if len(train_normal) else error_maps
    reference = float(np.quantile(reference_pool, config.mask_quantile)) if reference_pool.size else 1.0
    masks = pixel_masks(error_maps[train], params.eta_a, reference)
    masks[labelled_normal[train]] = 1.0  # the operator says all of it is normal: learn it whole
    return MinedSet(normal, abnormal, holdout, train, masks, reference)


def _crop_box(height: int, width: int, fraction: float, unit: int) -> tuple[int, int]:
    if fraction >= 1.0:
        return height, width
    return (
        max(unit, unit * round(height * fraction / unit)),
        max(unit, unit * round(width * fraction / unit)),
    )


def fine_tune(
    model: FramePredictor,
    window: Window,
    mined: MinedSet,
    old_maps: np.ndarray,
    replay: list[np.ndarray],
    config: SelfTrainConfig,
) -> tuple[FramePredictor, dict[str, Any]]:
    """A copy of `model` fine-tuned on the mined frames (masked L1 + anomaly hinge) and replayed clips."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    candidate = copy.deepcopy(model).train()
    history = model.config.history
    optimizer = torch.optim.AdamW(candidate.parameters(), lr=config.learning_rate, weight_decay=1e-4)
    sampler = ClipSampler(replay, history, PseudoAnomalyConfig(), rng) if replay else None
    n_replay = round(config.batch_size * config.replay_share) if sampler is not None else 0
    n_mined = config.batch_size - n_replay
    height, width = window.frames.shape[1:]
    crop_h, crop_w = _crop_box(height, width, config.crop_fraction, 2 * model.config.unshuffle)
    is_abnormal = mined.abnormal[mined.train]
    started, steps, loss_ema = time.monotonic(), 0, float("nan")
    while steps < config.steps and time.monotonic() - started < config.max_seconds:
        pick = rng.integers(0, len(mined.train), n_mined)
        clips = window.clips(mined.train[pick], history)
        tops = rng.integers(0, height - crop_h + 1, n_mined)
        lefts = rng.integers(0, width - crop_w + 1, n_mined)
        cut = [np.s_[..., y : y + crop_h, x : x + crop_w] for y, x in zip(tops, lefts, strict=True)]
        clip_t = torch.from_numpy(np.stack([c[s] for c, s in zip(clips, cut, strict=True)])).float() / 255
        mask = torch.from_numpy(np.stack([mined.masks[p][s] for p, s in zip(pick, cut, strict=True)]))
        before = torch.from_numpy(
            np.stack([old_maps[mined.train[p]][s] for p, s in zip(pick, cut, strict=True)])
        )
        baseline = torch.stack([candidate.baseline[s] for s in cut])
        prediction, target = candidate.predict(clip_t, list(zip(tops.tolist(), lefts.tolist(), strict=True)))
        error = (prediction - target).abs()
        loss = (error * mask).sum() / mask.sum().clamp(min=1.0)
        hidden = (1.0 - mask) * torch.from_numpy(is_abnormal[pick]).float()[:, None, None]
        if hidden.sum() > 0:  # mined anomalies: their error may not fall below what it was
            served = (error - baseline).clamp(min=0.0)
            loss = loss + (F.relu(before - served) * hidden).sum() / hidden.sum()
        if sampler is not None:
            batch, offsets = sampler.batch(n_replay, (crop_h, crop_w))
            replay_prediction, replay_target = candidate.predict(
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
    candidate.eval()
    return candidate, {"steps": steps, "seconds": round(time.monotonic() - started, 2), "loss": loss_ema}


def refit(
    candidate: FramePredictor,
    parent: FramePredictor,
    window: Window,
    mined: MinedSet,
    prior_frames: int,
    calibration_extra: np.ndarray | None = None,
) -> ScoreCalibration:
    """Error baseline and score calibration of the candidate, fitted to the site's mined normal frames.

    The baseline becomes a mean of the parent's (weighted as `prior_frames` frames) and the candidate's
    masked mean error over the training normal frames; the calibration is fitted to the candidate's raw
    scores over those frames (and `calibration_extra` clips of earlier normal footage).
    """
    normal_train = mined.train[~mined.abnormal[mined.train]]
    masks = mined.masks[~mined.abnormal[mined.train]]
    history = candidate.config.history
    candidate.baseline.zero_()
    total = torch.zeros_like(parent.baseline, dtype=torch.float64)
    weight = torch.zeros_like(total)
    with torch.inference_mode():
        for start in range(0, len(normal_train), 64):
            clips = torch.from_numpy(window.clips(normal_train[start : start + 64], history))
            mask = torch.from_numpy(masks[start : start + 64]).double()
            total += (candidate(clips).double() * mask).sum(0)
            weight += mask.sum(0)
    prior = float(prior_frames)
    candidate.baseline.copy_(((prior * parent.baseline.double() + total) / (prior + weight)).float())
    detector = TorchDetector(candidate, {"kind": MODEL_KIND, "version": "refit", **_size(candidate)})
    clips_for_calibration = [window.clips(normal_train, history)]
    if calibration_extra is not None and len(calibration_extra):
        clips_for_calibration.append(calibration_extra)
    raws = np.concatenate([_raw(detector, clips) for clips in clips_for_calibration if len(clips)])
    return ScoreCalibration.fit(raws)


def _size(model: FramePredictor) -> dict[str, int]:
    return {"height": model.config.height, "width": model.config.width, "history": model.config.history}


def _raw(detector: Detector, clips: np.ndarray, batch_size: int = 64) -> np.ndarray:
    out = [
        raw_scores(detector, detector.error_maps(clips[start : start + batch_size]))
        for start in range(0, len(clips), batch_size)
    ]
    return np.concatenate(out) if out else np.empty(0, dtype=np.float32)


@dataclass
class Validation:
    accepted: bool
    reason: str
    metrics: dict[str, float]


def _z(detector: Detector, raw: np.ndarray) -> np.ndarray:
    calibration = ScoreCalibration.from_dict(detector.info.metadata["calibration"])
    return (raw - calibration.median) / calibration.scale


def validate(
    current: Detector, candidate: Detector, window: Window, mined: MinedSet, config: SelfTrainConfig
) -> Validation:
    """The candidate against the model in service on held-out mined normal frames and pseudo anomalies.

    Scores are compared as each model's own robust z-scores (its calibration), the scale alerts are
    raised on. Rejected: non-finite output, held-out normal frames scored higher by more than
    `normal_tolerance`, or pseudo anomalies separated less than `separation_ratio` times as well.
    """
    history = current.info.history
    clips = window.clips(mined.holdout, history)
    rng = np.random.default_rng(config.seed + 1)
    pasted = clips.copy()
    sampler = ClipSampler([window.frames], history, PseudoAnomalyConfig(), rng)
    for clip in pasted:
        sampler.paste_patch(clip)
    metrics: dict[str, float] = {}
    for name, detector in (("current", current), ("candidate", candidate)):
        normal_z = _z(detector, _raw(detector, clips))
        pseudo_z = _z(detector, _raw(detector, pasted))
        if not (np.isfinite(normal_z).all() and np.isfinite(pseudo_z).all()):
            return Validation(False, f"{name} model scores are not finite", metrics)
        metrics[f"{name}_normal_z"] = float(np.mean(normal_z))
        metrics[f"{name}_separation"] = float(np.median(pseudo_z) - np.median(normal_z))
    if metrics["candidate_normal_z"] > metrics["current_normal_z"] + config.normal_tolerance:
        return Validation(
            False,
            f"held-out normal frames score higher (z {metrics['candidate_normal_z']:.2f} vs "
            f"{metrics['current_normal_z']:.2f})",
            metrics,
        )
    needed = config.separation_ratio * metrics["current_separation"]
    if metrics["candidate_separation"] < needed:
        return Validation(
            False,
            f"pseudo anomalies stand out less (separation {metrics['candidate_separation']:.2f} < {needed:.2f})",
            metrics,
        )
    return Validation(
        True, "better or as good on held-out normal frames; still reacts to pseudo anomalies", metrics
    )


@dataclass
class CycleResult:
    accepted: bool
    reason: str
    report: dict[str, Any]
    model: FramePredictor | None = None  # the candidate when accepted
    metadata: dict[str, Any] | None = None
    mined_normal: np.ndarray | None = None  # bool [N]: the window's mined normal frames


def new_version() -> str:
    return f"{MODEL_KIND}-{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%S%fZ')}"


def run_cycle(
    model: FramePredictor,
    metadata: dict[str, Any],
    current: Detector,
    window: Window,
    replay: list[np.ndarray],
    config: SelfTrainConfig,
    eta_s: float | None = None,
) -> CycleResult:
    """One self-training cycle over a window scored by `current` (the served form of `model`)."""
    started = time.monotonic()
    report: dict[str, Any] = {
        "window_frames": len(window),
        "policy": config.policy,
        "parent": metadata["version"],
    }
    maps = window_error_maps(TorchDetector(model, metadata), window)
    mined = mine(window, maps, config, eta_s)
    report["mined"] = mined.counts()
    report["mask_reference"] = mined.reference_scale
    report["mining_s"] = round(time.monotonic() - started, 2)
    normal_count = int((mined.normal & ~mined.abnormal).sum())
    if normal_count < config.min_normal_frames or len(mined.holdout) == 0:
        reason = f"too few confident normal frames ({normal_count}; {config.min_normal_frames} needed)"
        return CycleResult(False, reason, {**report, "seconds": round(time.monotonic() - started, 2)})
    candidate, training = fine_tune(model, window, mined, maps, replay, config)
    report["training"] = training
    extra = _replay_clips(replay, model.config.history, 500, config.seed)
    calibration = refit(candidate, model, window, mined, config.baseline_prior_frames, extra)
    version = new_version()
    report["candidate"] = version
    candidate_metadata = {
        **metadata,
        "version": version,
        "parent": metadata["version"],
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "calibration": calibration.to_dict(),
        "selftrain": {"config": config.to_dict(), "mined": report["mined"]},
    }
    validation = validate(current, TorchDetector(candidate, candidate_metadata), window, mined, config)
    report["validation"] = {
        "accepted": validation.accepted,
        "reason": validation.reason,
        **validation.metrics,
    }
    report["seconds"] = round(time.monotonic() - started, 2)
    log.info(
        "cycle over %d frames: mined %s, %d steps, %s: %s",
        len(window),
        report["mined"],
        training["steps"],
        "accepted" if validation.accepted else "rejected",
        validation.reason,
    )
    if not validation.accepted:
        return CycleResult(False, validation.reason, report)
    candidate_metadata["selftrain"]["validation"] = report["validation"]
    return CycleResult(
        True, validation.reason, report, candidate, candidate_metadata, mined.normal & ~mined.abnormal
    )


def _replay_clips(replay: list[np.ndarray], history: int, count: int, seed: int) -> np.ndarray | None:
    if not replay:
        return None
    sampler = ClipSampler(replay, history, PseudoAnomalyConfig(0.0, 0.0, 0.0), np.random.default_rng(seed))
    return sampler.batch(min(count, len(sampler)))[0]
