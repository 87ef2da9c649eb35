"""A camera's scorer carried to another model at a swap: its statistics go on in the new model's units."""

from __future__ import annotations

import numpy as np

from models.detector.scores import ScoreCalibration
from models.scoring.camera import CameraScorer

OLD = ScoreCalibration(median=1.0, scale=2.0)
NEW = ScoreCalibration(median=10.0, scale=0.5, level=1.5)


def in_new_units(raw: np.ndarray) -> np.ndarray:
    return NEW.median + (raw - OLD.median) / OLD.scale * NEW.scale


def test_a_carried_scorer_normalizes_as_the_camera_taught_the_old_one() -> None:
    rng = np.random.default_rng(0)
    camera = rng.normal(4.0, 3.0, 1500)  # a camera whose own level and spread differ from the calibration's
    old = CameraScorer(OLD)
    for raw in camera:
        old.update(float(raw))
    carried = old.carried_to(NEW)
    assert list(carried.recent_scores) == list(old.recent_scores)
    fresh = CameraScorer(NEW)
    for raw in rng.normal(4.0, 3.0, 50):
        z_old = old.normalize(float(raw))
        # the same robust z as the old model would give, and the new model's level on top
        assert np.isclose(carried.normalize(float(in_new_units(np.float64(raw)))), z_old + NEW.level)
        fresh.normalize(float(in_new_units(np.float64(raw))))
    # a fresh scorer would have forgotten the camera: its statistics are still mostly the calibration's
    assert len(fresh.recent_raw) == 50 and len(carried.recent_raw) == 1550


def test_nothing_is_carried_from_or_to_the_motion_baseline() -> None:
    baseline = CameraScorer(None)
    for raw in range(100):
        baseline.update(float(raw))
    assert len(baseline.carried_to(NEW).recent_raw) == 0
    assert len(CameraScorer(OLD).carried_to(None).recent_raw) == 0
