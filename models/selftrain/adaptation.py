"""A cycle's candidates: the current model adapted to the mined frames (masked, stream by stream), its
statistics refitted on held-out normal frames, and a fresh fit where the site no longer looks like the
model's footage. See models/selftrain/cycle.py for the whole cycle.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from models.detector.base import Detector
from models.detector.coreset import coreset, extend_coreset
from models.detector.fitting import FitConfig, fit_detector, frame_features
from models.detector.flow import FlowConfig, clip_speeds
from models.detector.predictor_training import gradient_step, running_mean
from models.detector.pseudo import ClipSampler, PseudoAnomalyConfig
from models.detector.runtime import TorchDetector
from models.detector.scores import (
    ScoreCalibration,
    camera_groups,
    camera_patch_scores,
    combined_scores,
)
from models.detector.streams import STREAM_MIN_SCALE, DetectorConfig, DetectorNet
from models.detector.views import CAMERA_VIEWS, encode_map, parse_views
from models.selftrain.config import BATCH, MinedSet, SelfTrainConfig, Window
from models.selftrain.mining import (
    WindowEvidence,
    run_cameras,
    run_videos,
)
from models.selftrain.validation import clip_raw_scores


# ---------------------------------------------------------------- adaptation
def _full_masks(masks: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.stack([cv2.resize(m, (width, height), interpolation=cv2.INTER_NEAREST) for m in masks])


def _mined_speed_sums(
    window: Window, mined: MinedSet, rows: np.ndarray, flow: FlowConfig, detector: DetectorConfig
) -> tuple[np.ndarray, np.ndarray]:
    """The masked speeds (measured with `flow`) of the mined training frames `rows` (positions in
    `mined.train`), summed per pixel, and how many frames each pixel's sum holds."""
    total = np.zeros((detector.height, detector.width), dtype=np.float64)
    weight = np.zeros_like(total)
    for start in range(0, len(rows), BATCH):
        part = rows[start : start + BATCH]
        speed = clip_speeds(window.clips(mined.train[part], detector.history), flow)
        mask = _full_masks(mined.masks[part], detector.height, detector.width)
        total += (speed * mask).sum(0)
        weight += mask.sum(0)
    return total, weight


def _blended_speed(old: np.ndarray, total: np.ndarray, weight: np.ndarray, prior: float) -> np.ndarray:
    return ((prior * old.astype(np.float64) + total) / (prior + weight)).astype(np.float32)


def adapt_motion(candidate: DetectorNet, window: Window, mined: MinedSet, config: SelfTrainConfig) -> None:
    """The normal speed per pixel: the current one (as `prior_frames` frames) and the masked speeds of the
    mined normal frames. Where things move (the place stream) is not adapted: a mined "normal" set that
    holds a person crossing a lawn would teach the lawn as a path (measured in the README); a fresh fit
    learns the site's paths."""
    motion = candidate.motion
    assert motion is not None
    detector = candidate.config
    total, weight = _mined_speed_sums(window, mined, np.arange(len(mined.train)), detector.flow, detector)
    old = motion.normal_speed.numpy()
    motion.normal_speed.copy_(torch.from_numpy(_blended_speed(old, total, weight, config.prior_frames)))


def adapt_view_motion(
    metadata: dict[str, Any],
    window: Window,
    mined: MinedSet,
    config: SelfTrainConfig,
    detector: DetectorConfig,
) -> tuple[dict[str, Any], list[str]]:
    """Each camera's own normal speed (models/detector/views.py) adapted as `adapt_motion` adapts the
    site's, on that camera's mined frames measured with its own flow: the site's speed does not score a
    camera that keeps its view. Returns the metadata's views with those speeds (empty where none of the
    window's cameras has a view), and the cameras adapted."""
    views = parse_views(metadata)
    groups = camera_groups(window.camera_of(mined.train), len(mined.train))
    viewed = sorted(camera for camera in groups if camera in views)
    if not viewed:
        return {}, []
    updated = {camera: dict(view) for camera, view in metadata[CAMERA_VIEWS].items()}
    for camera in viewed:
        view = views[camera]
        flow = view.flow or detector.flow
        total, weight = _mined_speed_sums(window, mined, groups[camera], flow, detector)
        speed = _blended_speed(view.normal_speed, total, weight, config.prior_frames)
        updated[camera]["normal_speed"] = encode_map(speed)
    return {CAMERA_VIEWS: updated}, viewed


def adapt_appearance(
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


def fine_tune_prediction(
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
        loss_ema = running_mean(loss_ema, gradient_step(optimizer, loss), 0.95)
        steps += 1
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
    return replace(
        old,
        median=(1 - weight) * old.median + weight * new.median,
        scale=max((1 - weight) * old.scale + weight * new.scale, 1e-6),
    )


def refit_statistics(
    candidate: TorchDetector, current: Detector, window: Window, frames: np.ndarray, prior_frames: int
) -> tuple[dict[str, Any], dict[str | None, ScoreCalibration]]:
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
    new level when the candidate has a stream its parent lacks), by camera view (None: the site's).

    A camera whose own view the model keeps (models/detector/views.py) has its frames refitted in its
    view: its statistics and calibration, with its own level; the site's are refitted on the others.
    """
    info = candidate.info
    old_calibration = ScoreCalibration.from_dict(info.metadata["calibration"])
    kept = {"stream_stats": info.metadata["stream_stats"], "calibration": info.metadata["calibration"]}
    if len(frames) == 0:
        return kept, {None: old_calibration}
    history = max(info.history, current.info.history)  # both score them
    cameras = window.camera_of(frames)
    clips = window.clips(frames, history)
    patch = np.concatenate(
        [
            camera_patch_scores(
                candidate,
                candidate.served_maps(clips[i : i + BATCH], cameras[i : i + BATCH]),
                cameras[i : i + BATCH],
            )
            for i in range(0, len(frames), BATCH)
        ]
    )
    served_raw = clip_raw_scores(current, clips, cameras)
    # a camera whose own view the model keeps is refitted in its view, the site's statistics on the others
    views = info.camera_views
    site_rows = np.array([camera not in views for camera in cameras])
    refitted, references = dict(kept), {None: old_calibration}
    if site_rows.any():
        refitted, references[None] = _refit_group(
            candidate, None, patch, site_rows, cameras, served_raw, prior_frames, current
        )
    if any(camera in views for camera in cameras):
        refitted[CAMERA_VIEWS] = {camera: view.to_dict() for camera, view in views.items()}
        for camera in sorted(set(views).intersection(cameras)):
            rows = np.array([c == camera for c in cameras])
            own, references[camera] = _refit_group(
                candidate, camera, patch, rows, cameras, served_raw, prior_frames, current
            )
            refitted[CAMERA_VIEWS][camera].update(own)
    return refitted, references


def _refit_group(
    candidate: TorchDetector,
    camera: str | None,
    patch: np.ndarray,
    rows: np.ndarray,
    cameras: list[str | None],
    served_raw: np.ndarray,
    prior_frames: int,
    current: Detector,
) -> tuple[dict[str, Any], ScoreCalibration]:
    """refit_statistics over the frames `rows` (bool [N]) of one group, whose patch scores are `patch[rows]`
    and whose raw scores under the model in service are `served_raw[rows]`: the cameras scored in the
    site's view (`camera` None), or one camera in its own. Returns its statistics and calibration (as
    metadata keys), and its calibration before the level (validation's frame of reference)."""
    info = candidate.info.for_camera(camera)
    patch = patch[rows]
    old_calibration = ScoreCalibration.from_dict(info.metadata["calibration"])
    parent = info.metadata.get("stream_stats") or {}
    new_streams = [name for name in info.streams if name not in parent]
    # the place evidence of a camera whose view the map no longer knows is taken out, not measured: its
    # zeros would pull the stream's normal level down and light the other cameras' places
    place_scored = np.array(
        [c not in info.place_silenced_cameras for c, row in zip(cameras, rows, strict=True) if row],
        dtype=bool,
    )
    stats = []
    for index, name in enumerate(info.streams):
        scored = place_scored if name == "place" and place_scored.any() else np.ones(len(patch), dtype=bool)
        fitted = ScoreCalibration.fit(patch[scored, index], STREAM_MIN_SCALE.get(name, 0.0))
        # a stream new in this cycle (the ordinal head) has no statistics to blend with
        stats.append(
            _blend(ScoreCalibration.from_dict(parent[name]), fitted, prior_frames, int(scored.sum()))
            if name in parent
            else fitted
        )
    raw = combined_scores(patch, stats)
    blended = _blend(old_calibration, ScoreCalibration.fit(raw), prior_frames, len(patch))
    served = ScoreCalibration.from_dict(current.info.for_camera(camera).metadata["calibration"])
    served_z = float(np.median(served.z(served_raw[rows])))
    own_z = float(np.median(replace(blended, level=0.0).z(raw)))
    calibration = replace(blended, level=served_z - own_z)
    refitted = {
        "stream_stats": {name: stat.to_dict() for name, stat in zip(info.streams, stats, strict=True)},
        "calibration": calibration.to_dict(),
    }
    # a stream new in the candidate adds a term its parent's raw score lacks: no common frame of reference,
    # so its normal level is the one the calibration frames set
    return refitted, calibration if new_streams else blended


def fitted_structure(config: DetectorConfig, flow: FlowConfig | None = None) -> DetectorConfig:
    """What a fit to normal footage builds of a model: its streams, without what only cycles and labels
    add on top (the ordinal head, the per-cell exception), measuring `flow` (None: the model's)."""
    streams = tuple(s for s in config.streams if s != "ordinal")
    return replace(config, streams=streams, exception_cells=0, flow=flow or config.flow)


def fresh_fit(
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
    # the flow the site's footage calls for, over the model's gap: the candidate is validated against the
    # model in service on the same clips (a replacement, which is not, takes the site's gap too)
    flow = replace(config.fit_flow, gap=model.config.flow.gap) if config.fit_flow is not None else None
    fitted = fit_detector(
        run_videos(window, frames),
        fitted_structure(model.config, flow),
        FitConfig(seed=config.seed, max_frames=config.memory_frames),
        cameras=run_cameras(window, frames),
    )
    return fitted.model, fitted.metadata_stats()
