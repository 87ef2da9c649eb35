"""Frames an operator labelled normal, learned as normal at once, whatever the mining makes of them.

A cycle's mining offers the appearance memory a sample of cells from evenly spread frames, and its normal
speed is a mean over thousands of frames: a false alert the operator marks normal would mostly survive
it. Here the labelled frames are learned directly, the way the fit learns normal footage:

- appearance (false alarms: labelled normal without a category): the frames' cells that the memory
  covers worst join it (the k-center coreset continued, models/detector/coreset.extend_coreset), until
  every labelled cell is within the memory's own typical reach or `max_cells` were added; what the memory
  covered stays;
- motion (optional, `motion_exception`): where the labelled frames moved fastest above normal (their
  hot spots, not everywhere someone walked), the normal speed raised to the speed seen there (spread by
  `motion_spread` pixels, times `motion_margin`), so that the same motion at the same place is no longer
  faster than normal, while faster motion there, or motion anywhere else, scores as before;
- per-cell exception (a kind of event the site accepts: labelled normal with a category, e.g. cyclists,
  whose speed no memory of looks learns away; every label with `cell_exception`): the joint descriptors
  (appearance features, speed above normal) of the labelled frames' most anomalous cells are kept in the
  model, whose cells that look and move like one of them, and are more unusual than the site's normal
  footage looks, lose their evidence with their neighbours (models/detector/exception.py): what was marked normal stops
  counting, and a different thing beside it in the same frame still counts. False alarms go to the
  memory (and the label threshold, models/scoring/label_threshold.py, which silenced them in the
  measurements where the exception left one of three). Each kept cell is tagged with its kind
  (`kind_key`), so that a kind no label accepts any longer (deleted, or its frames labelled again) is
  taken out of the exception (`withdraw_kinds`) without undoing anything else.

The statistics (the streams' z units, the calibration) are left as they are: a labelled false alert
scores lower, normal footage scores as it did, and the alert threshold keeps its meaning.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import cv2
import numpy as np
import torch

from models.detector.coreset import extend_coreset
from models.detector.fitting import BATCH, frame_features
from models.detector.flow import clip_speeds
from models.detector.streams import DetectorNet
from models.selftrain.config import LabelLearning
from models.selftrain.ordinal import cell_evidence, pool_to_cells


def _nearest_other(points: torch.Tensor, groups: torch.Tensor, quantile: float) -> float:
    """The `quantile` of the distances from each of `points` [K, D] to the nearest one of another group
    (`groups` [K])."""
    distances = torch.cdist(points, points)
    distances[groups[:, None] == groups[None]] = float("inf")
    return float(torch.quantile(distances.amin(1), quantile))


def _memory_spacing(cells: torch.Tensor, quantile: float) -> float:
    """The `quantile` of the distances from each remembered cell to its nearest other one."""
    return _nearest_other(cells, torch.arange(len(cells)), quantile)


def kind_key(category: str) -> int:
    """The number a kind of event (a label's category, case and outer spaces aside) has in a model's
    per-cell exception: the same in every process, positive, never 0 (cells of no kind)."""
    digest = hashlib.sha256(category.strip().lower().encode()).digest()
    return (int.from_bytes(digest[:8], "big") >> 1) | 1


def learn_appearance(model: DetectorNet, frames: np.ndarray, config: LabelLearning) -> int:
    """Adds the worst-covered cells of `frames` (uint8 [N, H, W]) to the memory; returns how many."""
    appearance = model.appearance
    assert appearance is not None
    current = appearance.cells.clone()
    features = frame_features(model, frames).float()
    pool = features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])
    reach = _memory_spacing(current, config.reach_quantile)
    grown = extend_coreset(current, pool, config.max_cells, within=reach)
    model.remember(grown)
    return len(grown) - len(current)


def learn_motion(model: DetectorNet, clips: np.ndarray, config: LabelLearning) -> float:
    """Raises the normal speed, where the labelled clips (uint8 [N, history + 1, H, W]) moved fastest
    above normal (at least `motion_peak_share` of each frame's peak), to the speed seen there; returns
    the share of pixels raised."""
    motion = model.motion
    assert motion is not None
    seen = np.zeros(tuple(motion.normal_speed.shape), dtype=np.float32)
    for start in range(0, len(clips), BATCH):
        speed = clip_speeds(clips[start : start + BATCH], model.config.flow)
        with torch.inference_mode():
            above = motion(torch.from_numpy(speed)).numpy()  # speed above normal, per row scale
        peaks = above.reshape(len(above), -1).max(1)[:, None, None]
        hot = (above > 0) & (above >= config.motion_peak_share * peaks)
        seen = np.maximum(seen, np.where(hot, speed, 0.0).max(0))
    kernel = np.ones((config.motion_spread, config.motion_spread), np.uint8)
    seen = cv2.dilate(seen, kernel) * config.motion_margin
    old = motion.normal_speed.numpy()
    raised = seen > old
    motion.normal_speed.copy_(torch.from_numpy(np.maximum(old, seen)))
    return float(raised.mean())


def exception_cells(
    model: DetectorNet, clips: np.ndarray, anomaly: np.ndarray, config: LabelLearning
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The most anomalous cells of each clip's last frame (at most `exception_cells_per_frame`, with at
    least `exception_peak_share` of the frame's peak evidence): their features and speed above normal
    [M, C + 1], the clip each came from [M], and the speed weight that gives the speed the spread of the
    features over all the frames' cells. anomaly: the clips' anomaly maps [N, h', w'] (any resolution)."""
    chosen: list[torch.Tensor] = []
    origins: list[torch.Tensor] = []
    feature_spread, speed_spread = [], []
    for start in range(0, len(clips), BATCH):
        features, speed = cell_evidence(model, clips[start : start + BATCH])
        evidence = torch.from_numpy(pool_to_cells(anomaly[start : start + BATCH], tuple(speed.shape[-2:])))
        joint = torch.cat([features, speed[:, None]], dim=1).flatten(2).transpose(1, 2)  # [B, h * w, C + 1]
        feature_spread.append(joint[..., :-1].reshape(-1, joint.shape[-1] - 1).var(0).sum())
        speed_spread.append(joint[..., -1].var())
        flat = evidence.flatten(1)
        for row in range(len(flat)):
            top = torch.argsort(flat[row], descending=True)[: config.exception_cells_per_frame]
            top = top[
                (flat[row, top] > 0) & (flat[row, top] >= config.exception_peak_share * flat[row].max())
            ]
            chosen.append(joint[row, top])
            origins.append(torch.full((len(top),), start + row))
    weight = float(
        torch.stack(feature_spread).mean().sqrt() / torch.stack(speed_spread).mean().sqrt().clamp(min=1e-6)
    )
    return torch.cat(chosen), torch.cat(origins), weight


def exception_reach(descriptors: torch.Tensor, events: torch.Tensor, quantile: float) -> float:
    """The `quantile` of the distances from each kept descriptor [K, D] to the nearest one of another
    labelled event (`events` [K]): how far the kind carried from one event to the next; 0 with one event."""
    if len(torch.unique(events)) < 2:
        return 0.0
    return _nearest_other(descriptors, events, quantile)


def exception_seed(appearance_normal: dict[str, float] | None, z: float) -> float:
    """The distance to the appearance memory a cell needs to be taken for a kept one: `z` robust spreads
    above the appearance stream's level on normal footage (its statistics, `stream_stats["appearance"]`:
    the largest patch mean of held-out normal frames), more unusual than the site's footage ever looks in a
    patch; 0 (any cell) without them or with `z` 0."""
    if appearance_normal is None or z <= 0:
        return 0.0
    return float(appearance_normal["median"] + z * appearance_normal["scale"])


def learn_cell_exception(
    model: DetectorNet,
    clips: np.ndarray,
    events: np.ndarray,
    anomaly: np.ndarray,
    config: LabelLearning,
    appearance_normal: dict[str, float] | None = None,
    kinds: np.ndarray | None = None,
) -> dict[str, Any]:
    """Keeps the labelled clips' most anomalous cells in the model's per-cell exception, in place: cells
    it already covers (as closely as its cells lie to each other) are not added again, the newest `exception_max_cells` stay,
    and the reach is taken afresh over all of them. events: int [N], the labelled event of each clip
    (cells of one event lie close together and say nothing of how far the kind reaches); kinds: int [N],
    the `kind_key` of each clip's kind (None or 0: no kind)."""
    assert model.appearance is not None
    raw, origins, weight = exception_cells(model, clips, anomaly, config)
    new_events = torch.from_numpy(np.asarray(events))[origins]
    new_kinds = torch.from_numpy(np.zeros(len(clips), np.int64) if kinds is None else np.asarray(kinds))[
        origins
    ]
    old = model.exception
    if old is not None:  # the units of the first exception stay: its speed weight
        weight = float(old.speed_weight)
    descriptors = torch.cat([raw[:, :-1], raw[:, -1:] * weight], dim=1)
    if old is not None and len(descriptors):
        # what the kept cells cover as closely as they lie to each other is not kept again (the next cycle's
        # window holds the same labels)
        spacing = _memory_spacing(old.descriptors, 0.5) if len(old.descriptors) > 1 else 0.0
        fresh = old.nearest(descriptors) > spacing
        descriptors, new_events, new_kinds = descriptors[fresh], new_events[fresh], new_kinds[fresh]
        new_events = new_events + int(old.events.max()) + 1
        descriptors = torch.cat([old.descriptors, descriptors])[-config.exception_max_cells :]
        new_events = torch.cat([old.events, new_events])[-config.exception_max_cells :]
        new_kinds = torch.cat([old.kinds, new_kinds])[-config.exception_max_cells :]
    reach = exception_reach(descriptors, new_events, config.exception_reach_quantile)
    seed = exception_seed(appearance_normal, config.exception_seed_z)
    model.set_exception(
        descriptors,
        new_events,
        weight,
        reach,
        config.exception_ratio,
        config.exception_spread,
        seed,
        new_kinds,
    )
    return {
        "cells_kept": len(descriptors),
        "events": len(torch.unique(new_events)),
        "speed_weight": round(weight, 4),
        "reach": round(reach, 4),
        "seed": round(seed, 4),
    }


def withdraw_kinds(
    model: DetectorNet, accepted: Iterable[str], config: LabelLearning
) -> dict[str, Any] | None:
    """Takes out of the model's per-cell exception, in place, the cells learned for kinds that are not
    among the `accepted` categories (cells of no kind stay); None when there are none to take out."""
    exception = model.exception
    if exception is None:
        return None
    in_force = torch.tensor(sorted({kind_key(category) for category in accepted}), dtype=torch.long)
    withdrawn = (exception.kinds != 0) & ~torch.isin(exception.kinds, in_force)
    if not bool(withdrawn.any()):
        return None
    keep = ~withdrawn
    descriptors, events, kinds = exception.descriptors[keep], exception.events[keep], exception.kinds[keep]
    reach = exception_reach(descriptors, events, config.exception_reach_quantile)  # 0 with under 2 events
    model.set_exception(
        descriptors,
        events,
        float(exception.speed_weight),
        reach,
        float(exception.ratio),
        exception.spread,
        float(exception.seed),
        kinds,
    )
    return {"cells_withdrawn": int(withdrawn.sum()), "cells_kept": int(keep.sum())}


def labelled_events(indices: np.ndarray, segments: np.ndarray | None = None) -> np.ndarray:
    """int [N]: the labelled event of each of the sorted frame `indices`: a new one after each gap, or
    where the frames' segments (camera, reconnect) change."""
    indices = np.asarray(indices)
    breaks = np.diff(indices) > 1
    if segments is not None:
        breaks |= np.diff(np.asarray(segments)[indices]) != 0
    return np.r_[0, np.cumsum(breaks)].astype(np.int64)


def evenly_spread(indices: np.ndarray, count: int) -> np.ndarray:
    """At most `count` of `indices`, evenly spread (labelled runs are of near-identical frames)."""
    if len(indices) <= count:
        return indices
    return indices[np.linspace(0, len(indices) - 1, count).round().astype(int)]


def learn_labelled_normal(
    model: DetectorNet,
    clips: np.ndarray,
    config: LabelLearning,
    events: np.ndarray | None = None,
    anomaly: np.ndarray | None = None,
    accepted: np.ndarray | None = None,
    appearance_normal: dict[str, float] | None = None,
    kinds: np.ndarray | None = None,
) -> dict[str, Any]:
    """Learns clips (uint8 [N, history + 1, H, W], each a labelled frame with its past) as normal, in
    place; returns what changed. The per-cell exception needs the clips' labelled events (int [N]) and
    anomaly maps ([N, h', w']); without them it is not learned. `accepted` (bool [N]) marks the frames of a
    kind the site accepts (labelled normal with a category): with `config.accepted_exception` they are
    learned by the per-cell exception alone, the others (false alarms) by the memory as before.
    `appearance_normal`: the appearance stream's statistics (the model's `stream_stats["appearance"]`),
    which set how unusual a cell must be to be excepted (exception_seed). `kinds` (int [N]): the kind_key
    of each accepted frame's category, which its kept cells are tagged with."""
    everything = np.arange(len(clips))
    kind = np.zeros(len(clips), bool)
    if accepted is not None and config.accepted_exception:
        kind = np.asarray(accepted, dtype=bool)
    plain = evenly_spread(everything[~kind], config.max_frames)
    of_kind = evenly_spread(everything[kind], config.max_frames)
    report: dict[str, Any] = {"frames": len(plain) + len(of_kind)}
    if len(of_kind):
        report["accepted_frames"] = len(of_kind)
    if model.appearance is not None and config.memory and len(plain):
        report["cells_added"] = learn_appearance(model, clips[plain, -1], config)
    if model.motion is not None and config.motion_exception and len(plain):
        report["motion_pixels_raised"] = round(learn_motion(model, clips[plain], config), 4)
    excepted = np.sort(np.r_[plain, of_kind]) if config.cell_exception else of_kind
    if model.appearance is not None and len(excepted) and events is not None and anomaly is not None:
        report["cell_exception"] = learn_cell_exception(
            model,
            clips[excepted],
            events[excepted],
            anomaly[excepted],
            config,
            appearance_normal,
            None if kinds is None else np.asarray(kinds)[excepted],
        )
    return report
