"""A camera's scorer carried to another model at a swap: its statistics go on in the new model's units."""

from __future__ import annotations

import numpy as np

from models.detector.base import DetectorInfo
from models.detector.scores import ScoreCalibration
from models.scoring.camera import CameraScorer, CameraStream

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


def test_a_stream_carried_to_another_model_keeps_the_statistics_and_refills_its_history() -> None:
    old_info = DetectorInfo("m", "a", 8, 8, 2, {"calibration": OLD.to_dict()})
    new_info = DetectorInfo("m", "b", 16, 16, 1, {"calibration": NEW.to_dict()})
    stream = CameraStream(old_info)
    for value in range(20):
        stream.push(np.full((8, 8), value, np.uint8))
        stream.score(float(value))
    carried = stream.carried_to(new_info)
    assert carried.info is new_info and len(carried.history) == 0
    assert carried.scorer.calibration == NEW
    assert np.allclose(list(carried.scorer.recent_raw), in_new_units(np.arange(20.0)))
