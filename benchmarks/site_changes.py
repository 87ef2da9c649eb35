"""Copies of a dataset as another camera would see it: zoomed, moved, rotated, re-lit, noisier, at another
resolution or frame rate, its exposure hunting, in fog or under a shadow. The self-improvement benchmark
changes the testing frames only (a camera moved after its model was fitted); the held-out benchmark
changes training and testing alike (a new camera the detector's constants were never chosen on)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from models.evaluation import datasets

UNCHANGED = {
    "zoom": 1.0,
    "angle": 0.0,
    "shift_y": 0.0,
    "shift_x": 0.0,
    "gamma": 1.0,
    "noise_sigma": 0.0,
    "scale": 1.0,  # of the frame size: 0.5 is a camera of half the resolution
    "frame_step": 1,  # every n-th frame kept: 2 is a camera at half the frame rate
    "shake_px": 0.0,  # each frame shifted at random by this many pixels (sigma): a camera swaying in the wind
    # a camera whose automatic exposure hunts: every `exposure_period` frames the image's gain moves, over
    # 3 frames, to a new one drawn from 1 -/+ this share (0: a steady exposure)
    "exposure_swing": 0.0,
    "exposure_period": 30,
    "haze": 0.0,  # share of each pixel replaced by a bright veil (HAZE_LEVEL): fog, a dirty lens, glare
    "shadow_gain": 1.0,  # the light left on the view's left third (soft-edged): a building's shadow
    "seed": 0,
}
EXPOSURE_RAMP = 3  # frames a change of exposure takes
HAZE_LEVEL = 200.0  # grey level of fog's veil
SITE_CHANGES = {
    # as if the camera was zoomed in, moved a little and re-lit, with a noisier sensor: the frame's edges
    # (and what happens there) leave the view
    "site_change": {
        **UNCHANGED,
        "zoom": 1.10,
        "shift_y": 0.03,
        "shift_x": 0.02,
        "gamma": 0.7,
        "noise_sigma": 4.0,
    },
    # the same kind of change, other numbers (not used while choosing the method): zoomed less, moved the
    # other way, brighter instead of darker, another sensor's noise
    "site_change_brighter": {
        **UNCHANGED,
        "zoom": 1.05,
        "shift_y": 0.02,
        "shift_x": -0.03,
        "gamma": 1.4,
        "noise_sigma": 3.0,
        "seed": 1,
    },
    # as if the camera was mounted upside down: nothing leaves the view, every place and look changes
    "upside_down": {**UNCHANGED, "angle": 180.0},
    # as if the camera was knocked: turned 8 degrees and shifted, the light and sensor as they were
    "knocked": {**UNCHANGED, "angle": 8.0, "shift_y": 0.05, "shift_x": 0.04},
    # the same camera, its exposure hunting: the image's gain swings by up to 40% every 3 s
    "hunting_exposure": {**UNCHANGED, "exposure_swing": 0.4, "seed": 7},
    # the same camera in fog: half of every pixel's light is the veil's, the contrast halved
    "fog": {**UNCHANGED, "haze": 0.5},
    # the same camera at dusk: a darker, steeper tone curve
    "dusk": {**UNCHANGED, "gamma": 1.6},
    # the same camera, a shadow over the left third of its view
    "shadow": {**UNCHANGED, "shadow_gain": 0.55},
}


def change_warp(change: dict[str, float], height: int, width: int) -> np.ndarray:
    """The 2x3 affine map of unchanged pixel coordinates to the changed camera's (rotation and zoom about
    the centre, then the shift)."""
    warp = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), change["angle"], change["zoom"])
    warp[:, 2] += (change["shift_x"] * width, change["shift_y"] * height)
    return warp


def changed_copy(
    source: Path, target: Path, change: dict[str, float], splits: Sequence[str] = ("testing",)
) -> Path:
    """DATASET with the frames of `splits` transformed by `change`; the other splits and the labels link
    to the source (labels at a changed frame rate are rewritten: frame indices and fps)."""
    step = int(change.get("frame_step", 1))
    if step > 1 and set(splits) != {"training", "testing"}:
        raise ValueError("a changed frame rate changes every split")
    target.mkdir(parents=True, exist_ok=True)
    for split in ("training", "testing"):
        if split not in splits:
            (target / split).symlink_to((source / split).resolve())
    labels = source / "labels.json"
    if labels.is_file() and step > 1:
        (target / "labels.json").write_text(
            json.dumps(stepped_labels(json.loads(labels.read_text()), step, datasets.dataset_fps(source)))
        )
    elif labels.is_file():
        (target / "labels.json").symlink_to(labels.resolve())
    rng = np.random.default_rng(int(change["seed"]))
    lut = np.clip(np.round(255.0 * (np.arange(256) / 255.0) ** change["gamma"]), 0, 255).astype(np.uint8)
    for split in splits:
        for video in datasets.list_videos(source, split):
            out = target / split / video.name
            out.mkdir(parents=True)
            frames = video.frames[::step]  # frame folders (the benchmark datasets' layout)
            for frame, gain in zip(frames, exposure_gains(len(frames), change, rng), strict=True):
                image = cv2.imread(str(frame), cv2.IMREAD_GRAYSCALE)
                cv2.imwrite(str(out / f"{frame.stem}.png"), changed_frame(image, change, lut, rng, gain))
    return target


def stepped_labels(labels: dict[str, Any], step: int, fps: float) -> dict[str, Any]:
    """labels.json of the footage with every `step`-th frame kept (frame i becomes i / step): a range keeps
    the kept frames inside it, and is dropped if it holds none."""
    videos = {}
    for name, entry in labels["videos"].items():
        ranges = [(-(-int(start) // step), int(end) // step) for start, end in entry["abnormal"]]
        videos[name] = {
            "frames": -(-int(entry["frames"]) // step),
            "abnormal": [[start, end] for start, end in ranges if start <= end],
        }
    return {**labels, "fps": fps / step, "videos": videos}


def exposure_gains(count: int, change: dict[str, float], rng: np.random.Generator) -> np.ndarray:
    """float64 [count]: the image gain of each frame of a video (ones for a steady exposure): every
    `exposure_period` frames, from the first on, it moves linearly over EXPOSURE_RAMP frames from where
    it was to a new gain drawn uniformly from 1 -/+ `exposure_swing`."""
    swing = float(change.get("exposure_swing", 0.0))
    gains = np.ones(count)
    if swing <= 0:
        return gains
    period = int(change.get("exposure_period", UNCHANGED["exposure_period"]))
    level = 1.0
    for start in range(0, count, period):
        target = rng.uniform(1.0 - swing, 1.0 + swing)
        steps = np.minimum(np.arange(1, min(period, count - start) + 1) / EXPOSURE_RAMP, 1.0)
        gains[start : start + len(steps)] = level + (target - level) * steps
        level = target
    return gains


def changed_frame(
    image: np.ndarray,
    change: dict[str, float],
    lut: np.ndarray,
    rng: np.random.Generator,
    gain: float = 1.0,
) -> np.ndarray:
    height, width = image.shape
    warp = change_warp(change, height, width)
    if change.get("shake_px", 0.0) > 0:
        warp[:, 2] += rng.normal(0.0, change["shake_px"], 2)
    image = cv2.warpAffine(
        image,
        warp,
        (width, height),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT,
    )
    scale = change.get("scale", 1.0)
    if scale != 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    lit = lut[image].astype(np.float32) * gain * shadow_light(image.shape, change)
    haze = change.get("haze", 0.0)
    lit = lit * (1.0 - haze) + haze * HAZE_LEVEL
    return np.clip(lit + rng.normal(0.0, change["noise_sigma"], image.shape), 0, 255).astype(np.uint8)


def shadow_light(shape: tuple[int, ...], change: dict[str, float]) -> np.ndarray | float:
    """float32 [H, W]: the light on each pixel under the change's shadow, `shadow_gain` over the left third
    of the view and 1 elsewhere, the edge blurred over a 40th of the width (1.0 without a shadow)."""
    shade = change.get("shadow_gain", 1.0)
    if shade == 1.0:
        return 1.0
    height, width = shape
    light = np.ones((height, width), np.float32)
    light[:, : width // 3] = shade
    return cv2.GaussianBlur(light, (0, 0), width / 40)
