"""A camera's scorer carried to another model at a swap: its statistics go on in the new model's units."""

from __future__ import annotations

import numpy as np

from models.detector.base import DetectorInfo
from models.detector.scores import ScoreCalibration
from models.scoring.camera import CameraScorer, CameraStream, ScorerConfig

OLD = ScoreCalibration(median=1.0, scale=2.0)
NEW = ScoreCalibration(median=10.0, scale=0.5, level=1.5)
EVERY_FRAME = ScorerConfig(learn_below_z=np.inf)  # statistics taught by every frame, outliers too


def in_new_units(raw: np.ndarray) -> np.ndarray:
    return NEW.median + (raw - OLD.median) / OLD.scale * NEW.scale


def test_a_carried_scorer_normalizes_as_the_camera_taught_the_old_one() -> None:
    rng = np.random.default_rng(0)
    camera = rng.normal(4.0, 3.0, 1500)  # a camera whose own level and spread differ from the calibration's
    old = CameraScorer(OLD, EVERY_FRAME)
    for raw in camera:
        old.update(float(raw))
    carried = old.carried_to(NEW)
    assert list(carried.recent_scores) == list(old.recent_scores)
    fresh = CameraScorer(NEW, EVERY_FRAME)
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
    stream = CameraStream(old_info, EVERY_FRAME)
    for value in range(20):
        stream.push(np.full((8, 8), value, np.uint8))
        stream.score(float(value))
    carried = stream.carried_to(new_info)
    assert carried.info is new_info and len(carried.history) == 0
    assert carried.scorer.calibration == NEW
    assert np.allclose(list(carried.scorer.recent_raw), in_new_units(np.arange(20.0)))


def test_a_stretch_mostly_of_anomalies_does_not_become_the_camera_s_normal() -> None:
    rng = np.random.default_rng(0)
    calibration = ScoreCalibration(median=0.0, scale=1.0)
    # two anomalous frames in every three for 2400 frames (four minutes at 10 frames/s), after 1500 normal ones
    busy = np.where(np.arange(2400) % 3 < 2, rng.normal(8, 1, 2400), rng.normal(0, 1, 2400))
    gated, open_door = CameraScorer(calibration), CameraScorer(calibration, EVERY_FRAME)
    for raw in rng.normal(0, 1, 1500):
        gated.normalize(raw), open_door.normalize(raw)
    z_gated = np.array([gated.normalize(raw) for raw in busy])[-300:]
    z_open = np.array([open_door.normalize(raw) for raw in busy])[-300:]
    anomalous = busy[-300:] > 4
    assert np.median(z_gated[anomalous]) > 6  # still anomalous after 1600 of them
    assert np.median(z_open[anomalous]) < 2  # learned as normal when every frame teaches the statistics
    assert gated.outlier_excess < gated.config.relearn_after  # the normal third keeps it from relearning


def test_a_lasting_change_of_the_view_becomes_the_camera_s_normal() -> None:
    rng = np.random.default_rng(1)
    scorer = CameraScorer(ScoreCalibration(median=0.0, scale=1.0), ScorerConfig(relearn_after=200))
    z = [scorer.normalize(raw) for raw in rng.normal(10, 1, 4000)]
    assert min(z[:200]) > 5 and len(scorer.recent_raw) == 3000  # outliers; from the 200th on, learned
    assert np.median(z[-100:]) < 3  # as the window fills, the new view scores as normal
    assert scorer.learned_last


def test_the_motion_baseline_learns_from_every_frame() -> None:
    scorer = CameraScorer(None)
    for raw in [0.0, 1.0, 50.0, 60.0, 70.0]:
        scorer.normalize(raw)
    assert list(scorer.recent_raw) == [0.0, 1.0, 50.0, 60.0, 70.0] and scorer.outlier_excess == 0


def test_the_outlier_count_is_kept_by_the_state_and_carried_to_another_model() -> None:
    scorer = CameraScorer(ScoreCalibration(median=0.0, scale=1.0))
    for raw in [0.5, 9.0, 9.5]:
        scorer.normalize(raw)
    restored = CameraScorer(ScoreCalibration(median=0.0, scale=1.0))
    restored.load_state_dict(scorer.state_dict())
    assert restored.outlier_excess == 2 and list(restored.recent_raw) == [0.5]
    assert scorer.carried_to(ScoreCalibration(median=1.0, scale=2.0)).outlier_excess == 2


def test_the_score_is_smoothed_over_half_a_second_at_every_rate() -> None:
    assert [ScorerConfig().at_rate(fps).smoothing for fps in (10, 5, 25, 1)] == [5, 3, 13, 1]
    scorer = CameraScorer(None, ScorerConfig().at_rate(10))
    for raw in range(8):
        scorer.update(float(raw))
    scorer.set_rate(5)  # the camera's source slowed down: the newest scores kept
    assert scorer.config.smoothing == 3 and len(scorer.recent_scores) == 3
