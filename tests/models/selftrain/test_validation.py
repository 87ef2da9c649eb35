"""The view checks' statistics on constructed patch scores: a moved camera among several is found by its
own frames, which the first quartile over all of them never sees."""

from __future__ import annotations

import numpy as np
import pytest

from models.detector.runtime import TorchDetector
from models.selftrain.validation import CAMERA_CHECK_SAMPLES, quiet_place_z, quiet_place_z_by_camera
from tests.models.conftest import walkers_detector


def place_patch(detector: TorchDetector, gated_z: list[float]) -> np.ndarray:
    """float32 [N, S]: patch scores whose place stream lies `gated_z` over its gate, the others at their
    median."""
    stats = detector.info.stream_stats
    patch = np.array([[s.median for s in stats]] * len(gated_z), dtype=np.float32)
    place = detector.info.streams.index("place")
    gate = stats[place].gate or 0.0
    patch[:, place] = stats[place].median + (gate + np.asarray(gated_z)) * stats[place].scale
    return patch


def test_a_camera_that_moved_is_found_by_its_own_frames() -> None:
    walker_model = walkers_detector()
    count = CAMERA_CHECK_SAMPLES
    cameras = np.repeat(np.arange(4), count)
    patch = place_patch(walker_model, [0.0] * (3 * count) + [3.0] * count)  # the fourth moved
    assert quiet_place_z(walker_model, patch) == 0.0  # a quarter of the frames: the quartile never sees it
    by_camera = quiet_place_z_by_camera(walker_model, patch, cameras)
    assert by_camera == pytest.approx({0: 0.0, 1: 0.0, 2: 0.0, 3: 3.0}, abs=1e-4)
    # a camera with fewer sampled frames than the check was measured on is not judged alone
    short = quiet_place_z_by_camera(walker_model, patch[1:], cameras[1:])
    assert sorted(short) == [1, 2, 3]
