import numpy as np
import pytest

from models.selftrain.config import SelfTrainConfig, Window
from models.selftrain.mining import (
    MiningParams,
    WindowEvidence,
    abnormal_frames,
    apply_labels,
    localized_normal_frames,
    long_runs,
    mine,
    near,
    normal_frames,
    pixel_masks,
    runs_within_segments,
    segment_mean,
)

PARAMS = MiningParams(min_run=3)


def test_runs_shorter_than_the_minimum_are_dropped() -> None:
    selected = np.array([1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 1, 0, 1], dtype=bool)
    kept = long_runs(selected, 3)
    assert kept.tolist() == [0, 0, 0, 1, 1, 1, 0, 1, 1, 1, 1, 0, 0]
    assert long_runs(np.ones(9, dtype=bool), 10).sum() == 0  # FNmin = 10: nine frames are too few


def test_abnormal_frames_are_high_scores_in_long_runs() -> None:
    scores = np.array([0.9, 0.9, 0.1, 0.86, 0.95, 0.85, 0.2, 0.99])
    assert abnormal_frames(scores, PARAMS).tolist() == [0, 0, 0, 1, 1, 1, 0, 0]


def test_normal_rule_matches_a_hand_computation() -> None:
    # Four candidate frames (S < eta_s), 1x4 pixels each, and one abnormal frame (S = 0.9).
    maps = np.array(
        [
            [[0.00, 0.01, 0.03, 0.05]],  # above 0.02: 0.03, 0.05 -> RS 0.04
            [[0.01, 0.01, 0.01, 0.04]],  # RS 0.04
            [[0.10, 0.20, 0.30, 0.40]],  # RS 0.25: a missed anomaly
            [[0.00, 0.00, 0.00, 0.03]],  # RS 0.03
            [[0.90, 0.90, 0.90, 0.90]],
        ]
    )
    scores = np.array([0.1, 0.2, 0.5, 0.1, 0.9])
    selection = normal_frames(scores, maps, MiningParams(min_run=1))
    # dynamic eta_p = min RS = 0.03 -> FS = [0.05, 0.04, 0.25, 0] (nothing above 0.03 in the last)
    rs = (np.array([0.04, 0.04, 0.25, 0.03]) - 0.03) / 0.22
    fs = np.array([0.05, 0.04, 0.25, 0.0]) / 0.25
    x = rs.mean()
    assert selection.hinge == pytest.approx(2 * (x - x * x))
    np.testing.assert_allclose(selection.rs[:4], rs)
    np.testing.assert_allclose(selection.fs[:4], fs)
    assert np.isnan(selection.rs[4])
    # T = 2 (0.2386 - 0.0569) = 0.363: FS 0.2, 0.16, 1.0, 0 -> the missed anomaly is excluded
    assert selection.keep.tolist() == [True, True, False, True, False]
    assert normal_frames(scores, maps, MiningParams(min_run=2)).keep.tolist() == [
        True,
        True,
        False,
        False,
        False,
    ]


def test_pixel_masks_hide_high_normalized_error() -> None:
    maps = np.array([[[0.0, 0.5, 0.79, 1.0]], [[0.0, 0.0, 0.0, 0.0]]], dtype=np.float32)
    assert pixel_masks(maps, 0.8).tolist() == [[[1, 1, 1, 0]], [[1, 1, 1, 1]]]
    # Against a normal-footage scale, a frame whose errors are all small hides nothing.
    small = np.array([[[0.01, 0.02, 0.03, 0.04]]], dtype=np.float32)
    assert pixel_masks(small, 0.8).tolist() == [[[1, 1, 1, 0]]]
    assert pixel_masks(small, 0.8, reference_scale=0.1).tolist() == [[[1, 1, 1, 1]]]


def test_localized_rule_matches_a_hand_computation() -> None:
    # 51 candidates evenly spread over [0, 0.5] and one abnormal frame; the 2nd/98th percentiles of the
    # candidates are 0.01 and 0.49, so normalized = (s - 0.01) / 0.48, clipped
    scores = np.r_[np.linspace(0.0, 0.5, 51), 0.95]
    normalized = np.clip((scores[:51] - 0.01) / 0.48, 0, 1)
    x = normalized.mean()
    hinge = 0.5 * (x - x * x)  # alpha 0.5
    expected = np.r_[normalized < hinge, False]
    kept = localized_normal_frames(scores, MiningParams(min_run=1), alpha=0.5)
    assert kept.tolist() == expected.tolist() and 0 < kept.sum() < 51
    # an outlier at the bottom (a stream's first frame, scored with no motion) does not set the scale
    with_outlier = scores.copy()
    with_outlier[0] = -5.0
    assert (
        localized_normal_frames(with_outlier, MiningParams(min_run=1), alpha=0.5)[1:].tolist()
        == kept[1:].tolist()
    )
    assert localized_normal_frames(scores, MiningParams(min_run=20), alpha=0.5).sum() == 0  # runs of 20: none


def test_runs_do_not_cross_segments_and_labels_override() -> None:
    selected = np.ones(8, dtype=bool)
    assert runs_within_segments(selected, np.array([0, 0, 0, 1, 1, 1, 1, 1]), 4).tolist() == [
        0,
        0,
        0,
        1,
        1,
        1,
        1,
        1,
    ]
    normal = np.array([1, 1, 0, 0], dtype=bool)
    abnormal = np.array([0, 0, 1, 1], dtype=bool)
    labels = np.array([1, -1, 0, -1])  # abnormal, none, normal, none
    normal, abnormal = apply_labels(normal, abnormal, labels)
    assert normal.tolist() == [0, 1, 1, 0] and abnormal.tolist() == [1, 0, 0, 1]


def test_segment_mean_is_centered_and_stays_within_segments() -> None:
    values = np.array([0.0, 0.0, 3.0, 0.0, 0.0, 9.0, 9.0])
    segments = np.array([0, 0, 0, 0, 0, 1, 1])
    # the mean of 3 around each value, the ends repeated; the 9s of the next segment do not leak back
    expected = [0.0, 1.0, 1.0, 1.0, 0.0, 9.0, 9.0]
    np.testing.assert_allclose(segment_mean(values, segments, 3), expected)
    np.testing.assert_array_equal(segment_mean(values, segments, 1), values)


def test_near_marks_frames_within_the_margin_of_the_same_segment() -> None:
    selected = np.array([0, 0, 0, 1, 0, 0, 0, 0], dtype=bool)
    segments = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    assert near(selected, segments, 2).tolist() == [0, 1, 1, 1, 1, 0, 0, 0]
    assert near(selected, segments, 0).tolist() == selected.tolist()


def test_a_window_too_short_for_any_run_mines_nothing() -> None:
    """Shorter than a run: no frame is mined, and the mined set is empty rather than an error (a cycle
    over it then finds too little to learn)."""
    config = SelfTrainConfig()
    frames = config.mining.min_run - 1
    window = Window(np.zeros((frames, 8, 8), np.uint8), np.zeros(frames, dtype=int))
    evidence = WindowEvidence(np.full(frames, 0.1), np.zeros(frames), np.zeros((frames, 4, 4), np.float16))
    mined = mine(window, evidence, config)
    assert not mined.normal.any() and not mined.abnormal.any()
    assert len(mined.train) == 0 and mined.masks.shape[0] == 0
