"""A cycle over a model that keeps its cameras' own views: each camera's statistics refitted in its view, with
its own level, the site's left to the cameras it has no view of; each camera's normal speed adapted on its
own frames."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest

from models.detector.fitting import MIN_VIEW_FRAMES, train_detector
from models.detector.runtime import TorchDetector
from models.detector.streams import DetectorConfig
from models.detector.views import CAMERA_VIEWS, parse_views
from models.selftrain.adaptation import adapt_view_motion, refit_statistics
from models.selftrain.config import MinedSet, SelfTrainConfig, Window
from models.selftrain.trainer import concat_windows
from models.selftrain.validation import clip_raw_scores, model_z
from tests.models.conftest import (
    HEIGHT,
    TINY_DETECTOR,
    WIDTH,
    synthetic_video,
    two_camera_footage,
    walker_video,
)

WALKERS = DetectorConfig(height=HEIGHT, width=WIDTH, streams=("motion", "place"))


def test_a_cycle_refits_each_camera_in_its_own_view_and_keeps_its_level() -> None:
    rng = np.random.default_rng(0)
    videos = {
        f"{camera}-{i}": synthetic_video(MIN_VIEW_FRAMES // 2, rng) for camera in "ab" for i in range(2)
    }
    model = train_detector(videos, TINY_DETECTOR, {}, cameras={name: name[0] for name in videos}).detector
    assert set(model.info.camera_views) == {"a", "b"}
    window = concat_windows(
        [Window(synthetic_video(40, rng), np.zeros(40, dtype=int)) for _ in range(3)],
        names=["a", "b", "gate"],
    )
    # the model in service scores camera a's frames 3 z above its view's calibration
    metadata = copy.deepcopy(model.info.metadata)
    metadata[CAMERA_VIEWS]["a"]["calibration"]["level"] = 3.0
    current = TorchDetector(model.model, metadata)
    frames = np.arange(len(window))
    refitted, references = refit_statistics(model, current, window, frames, 1000)
    assert set(references) == {None, "a", "b"}
    views = refitted[CAMERA_VIEWS]
    assert views["a"]["calibration"]["level"] == pytest.approx(3.0, abs=0.5)
    assert abs(views["b"]["calibration"]["level"]) < 0.5
    assert views["a"]["stream_stats"] != model.info.metadata[CAMERA_VIEWS]["a"]["stream_stats"]  # blended in
    # each camera's frames score as they were served: in its own view, and the gate in the site's
    candidate = TorchDetector(model.model, {**model.info.metadata, **refitted})
    for camera in ("a", "b", "gate"):
        part = frames[[c == camera for c in window.camera_of(frames)]]
        cameras = window.camera_of(part)
        clips = window.clips(part, model.info.history)
        served = np.median(model_z(current, clip_raw_scores(current, clips, cameras), cameras))
        swapped = np.median(model_z(candidate, clip_raw_scores(candidate, clips, cameras), cameras))
        assert swapped == pytest.approx(served, abs=1e-3)


def test_each_camera_s_own_normal_speed_is_adapted_on_its_own_frames() -> None:
    videos, cameras = two_camera_footage()
    model = train_detector(videos, WALKERS, {}, cameras=cameras).detector
    metadata = model.info.metadata
    rng = np.random.default_rng(1)
    # the path camera's walkers now take a new path, half way across; a gate camera has no view
    path = Window(walker_video(40, WIDTH * 0.5, rng), np.zeros(40, dtype=int))
    gate = Window(walker_video(40, WIDTH * 0.9, rng), np.zeros(40, dtype=int))
    window = concat_windows([path, gate], names=["path", "gate"])
    train = np.arange(len(window))
    masks = np.ones((len(train), HEIGHT // 8, WIDTH // 8), dtype=np.float32)
    mined = MinedSet(
        np.ones(len(window), bool), np.zeros(len(window), bool), train[:0], train[:0], train, masks, 1.0
    )
    config = SelfTrainConfig(prior_frames=40)
    before = copy.deepcopy(metadata)
    update, adapted = adapt_view_motion(metadata, window, mined, config, model.model.config)
    assert adapted == ["path"] and metadata == before  # the model's own metadata is left as it was
    views = parse_views({**metadata, **update})
    old = parse_views(metadata)
    new_path = int(WIDTH * 0.5)
    gained = views["path"].normal_speed[:, new_path - 2 : new_path + 3].mean()
    assert gained > 2 * old["path"].normal_speed[:, new_path - 2 : new_path + 3].mean()
    assert update[CAMERA_VIEWS]["lane"] == metadata[CAMERA_VIEWS]["lane"]  # not in the window: as it was
    # nothing is adapted where no camera of the window keeps a view
    assert adapt_view_motion(
        metadata,
        concat_windows([gate], names=["gate"]),
        replace(mined, train=train[:40], masks=masks[:40]),
        config,
        model.model.config,
    ) == ({}, [])
