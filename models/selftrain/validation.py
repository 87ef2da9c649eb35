"""Validation of a cycle's candidate against the model in service, on held-out mined normal frames, on
the mined anomalies and on pseudo anomalies pasted into the held-out frames."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from models.detector.base import Detector
from models.detector.pseudo import ClipSampler, PseudoAnomalyConfig
from models.detector.scores import (
    ScoreCalibration,
    camera_groups,
    camera_patch_scores,
    combined_scores,
    in_site_units,
    raw_scores,
)
from models.selftrain.config import BATCH, MinedSet, SelfTrainConfig, Window


# ---------------------------------------------------------------- validation
@dataclass
class Validation:
    accepted: bool
    reason: str
    metrics: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "reason": self.reason, **self.metrics}


def clip_raw_scores(
    detector: Detector, clips: np.ndarray, cameras: list[str | None] | None = None
) -> np.ndarray:
    """float32 [N]: raw frame scores of clips [N, ...], each scored as its camera (`cameras`, one per clip,
    Window.camera_of; None: the model's whole map everywhere) is served."""
    cameras = cameras or [None] * len(clips)
    out = []
    for start in range(0, len(clips), BATCH):
        part = cameras[start : start + BATCH]
        out.append(raw_scores(detector, detector.served_maps(clips[start : start + BATCH], part), part))
    return np.concatenate(out) if out else np.empty(0, dtype=np.float32)


def sampled_frames(window: Window, stride: int) -> np.ndarray:
    """int [N]: every `stride`-th frame of the window, the frames sampled_patch_scores scores."""
    return np.arange(0, len(window), max(1, stride))


def sampled_patch_scores(detector: Detector, window: Window, stride: int) -> np.ndarray:
    """float32 [N, S]: each stream's patch score of every `stride`-th frame of the window, in the site's
    units (a camera the model keeps a view of scored in it: scores.in_site_units)."""
    frames = sampled_frames(window, stride)
    out = []
    for start in range(0, len(frames), BATCH):
        cameras = window.camera_of(frames[start : start + BATCH])
        patch = camera_patch_scores(
            detector, window.stream_maps(detector, frames[start : start + BATCH]), cameras
        )
        out.append(in_site_units(detector, patch, cameras))
    return np.concatenate(out) if out else np.empty((0, len(detector.info.streams)), dtype=np.float32)


def quiet_quarter_z(detector: Detector, patch: np.ndarray) -> float:
    """How far from normal `detector` finds the quietest quarter of frames whose patch scores under it are
    `patch` ([N, S], sampled_patch_scores): the first quartile of its own z, without the level a swap
    holds. High where the model does not know the site: even the site's quiet footage is new to it."""
    raw = combined_scores(patch, detector.info.stream_stats)
    calibration = replace(ScoreCalibration.from_dict(detector.info.metadata["calibration"]), level=0.0)
    return float(np.quantile(calibration.z(raw), 0.25))


def quiet_place_z(detector: Detector, patch: np.ndarray) -> float:
    """The first quartile of the place stream's evidence over its gate (z units) over frames whose patch
    scores under `detector` are `patch` ([N, S], sampled_patch_scores): over 0 where more than three
    quarters of them move where the model's normal footage did not (the camera moved, or the site's paths
    changed)."""
    index = detector.info.streams.index("place")
    gated = combined_scores(patch[:, [index]], [detector.info.stream_stats[index]])
    return float(np.quantile(gated, 0.25))


# a camera's own sampled frames are checked alone from this many on (200 frames at the default stride of
# 10): the shortest window the check was measured on (README, *Self-improvement results*)
CAMERA_CHECK_SAMPLES = 20


def quiet_place_z_by_camera(detector: Detector, patch: np.ndarray, cameras: np.ndarray) -> dict[int, float]:
    """quiet_place_z over each camera's own frames (`cameras`: int [N], the camera of each row of `patch`),
    for the cameras with at least CAMERA_CHECK_SAMPLES of them. One camera of four that moved is a quarter
    of a joined window, which the first quartile over all of them never sees."""
    return {
        int(camera): quiet_place_z(detector, patch[cameras == camera])
        for camera, count in zip(*np.unique(cameras, return_counts=True), strict=True)
        if count >= CAMERA_CHECK_SAMPLES
    }


def model_z(
    detector: Detector,
    raw: np.ndarray,
    cameras: list[str | None] | None = None,
    references: dict[str | None, ScoreCalibration] | None = None,
) -> np.ndarray:
    """The raw scores as z in the model's calibration: each in its camera's (`cameras`, one per score; the
    site's, or the camera's own view's: DetectorInfo.for_camera), or in `references`' (by the camera
    whose view the model keeps, None: the site's) where they hold one."""
    info = detector.info
    out = np.empty(len(raw), dtype=np.float64)
    for camera, items in camera_groups(cameras, len(raw)).items():
        reference = (references or {}).get(camera if camera in info.camera_views else None)
        calibration = reference or ScoreCalibration.from_dict(info.for_camera(camera).metadata["calibration"])
        out[items] = calibration.z(np.asarray(raw)[items])
    return out


def validate(
    current: Detector,
    candidate: Detector,
    window: Window,
    mined: MinedSet,
    config: SelfTrainConfig,
    normal_reference: dict[str | None, ScoreCalibration] | None = None,
    anchors: np.ndarray | None = None,
) -> Validation:
    """The candidate against the model in service on held-out mined normal frames, on the mined anomalies
    and on pseudo anomalies pasted into normal frames.

    Scores are compared as each model's own robust z-scores, the scale alerts are raised on. The held-out
    normal frames' level is compared in `normal_reference` (the candidate's calibrations before the shift
    that keeps normal scores continuous across a swap, by camera view as refit_statistics returns them;
    that shift would make the levels equal by construction). Rejected: non-finite output, held-out normal frames scored higher by
    more than `normal_tolerance`, mined or pseudo anomalies set apart from normal frames less than
    `separation_ratio` times as well as before.

    The normal frames the anomalies are set apart from are `anchors` when given: clips of the footage the
    model in service was fitted to, which no cycle mined. The held-out frames come from the mined set:
    where that set holds anomalies (a busy window whose subtle events score low), a candidate that learned
    them as normal scores the held-out frames lower too, and seems to set the anomalies apart as well as
    before; against the anchors it does not.
    """
    history = max(current.info.history, candidate.info.history)  # each model takes the past it needs
    held_out = window.clips(mined.validation, history)
    held_out_cameras = window.camera_of(mined.validation)
    anchored = anchors is not None and len(anchors) > 0
    normal_clips = anchors if anchored else held_out
    normal_cameras = None if anchored else held_out_cameras  # anchors: the model's own footage
    rng = np.random.default_rng(config.seed + 1)
    pasted = normal_clips.copy()
    sampler = ClipSampler([window.frames], history, PseudoAnomalyConfig(), rng)
    for clip in pasted:
        sampler.paste_patch(clip, include_current=True)
    abnormal = np.flatnonzero(mined.abnormal)
    abnormal = abnormal[:: max(1, len(abnormal) // 200)]
    anomalies = window.clips(abnormal, history)
    metrics: dict[str, float] = {"anchor_clips": float(len(normal_clips))} if anchored else {}
    for name, detector in (("current", current), ("candidate", candidate)):
        held_out_raw = clip_raw_scores(detector, held_out, held_out_cameras)
        normal_z = model_z(
            detector,
            clip_raw_scores(detector, normal_clips) if anchored else held_out_raw,
            normal_cameras,
        )
        pseudo_z = model_z(detector, clip_raw_scores(detector, pasted, normal_cameras), normal_cameras)
        abnormal_cameras = window.camera_of(abnormal)
        abnormal_z = model_z(
            detector, clip_raw_scores(detector, anomalies, abnormal_cameras), abnormal_cameras
        )
        if not all(np.isfinite(z).all() for z in (normal_z, pseudo_z, abnormal_z, held_out_raw)):
            return Validation(False, f"{name} model scores are not finite", metrics)
        references = normal_reference if name == "candidate" else None
        metrics[f"{name}_normal_z"] = float(
            np.mean(model_z(detector, held_out_raw, held_out_cameras, references))
        )
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
