"""A cycle's statistics of a model that keeps its cameras' own views: each camera refitted in its view, with
its own level, the site's statistics left to the cameras it has no view of."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from models.detector.fitting import MIN_VIEW_FRAMES, train_detector
from models.detector.runtime import TorchDetector
from models.detector.views import CAMERA_VIEWS
from models.selftrain.adaptation import refit_statistics
from models.selftrain.config import Window
from models.selftrain.trainer import concat_windows
from models.selftrain.validation import clip_raw_scores, model_z
from tests.models.conftest import TINY_DETECTOR, synthetic_video


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
