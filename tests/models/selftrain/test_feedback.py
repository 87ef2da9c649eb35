"""Frames an operator labelled normal, learned at once: a labelled false alarm scores lower where it was,
what the model knew stays, and the same event elsewhere still stands out."""

from __future__ import annotations

import copy

import cv2
import numpy as np
import pytest

from models.detector.fitting import FitConfig, train_detector
from models.detector.runtime import TorchDetector
from models.detector.scores import anomaly_maps
from models.scoring.camera import padded_clips
from models.selftrain.config import LabelLearning
from models.selftrain.feedback import (
    exception_seed,
    kind_key,
    labelled_events,
    learn_labelled_normal,
    withdraw_kinds,
)
from tests.models.conftest import TINY_DETECTOR, synthetic_video


@pytest.fixture(scope="module")
def tiny_model() -> TorchDetector:
    rng = np.random.default_rng(0)
    videos = {"a": synthetic_video(40, rng), "b": synthetic_video(40, rng)}
    # frames taken at the footage's brightness alone, not its contrast: what labels teach is tested here,
    # and in these 32x48 views the racing square alone doubles a frame's spread (16 grey levels to 31),
    # so that matching it would recast every other cell of the frame (the match: test_streams)
    return train_detector(videos, TINY_DETECTOR, {}, FitConfig(match_contrast=False)).detector


def stream_peaks(detector: TorchDetector, clips: np.ndarray) -> np.ndarray:
    """[streams]: each stream's highest map value over the clips."""
    return detector.stream_maps(clips).max(axis=(0, 2, 3))


def racing_square(rows: slice) -> np.ndarray:
    video = synthetic_video(30, np.random.default_rng(5))
    for t in range(10, 30):
        x = int(4 * (t - 10)) % (video.shape[2] - 8)
        video[t, rows, x : x + 8] = 250
    return padded_clips(video, np.arange(10, 30), TINY_DETECTOR.history)


@pytest.mark.parametrize("motion_exception", [False, True], ids=["memory", "memory+motion"])
def test_a_labelled_false_alarm_scores_lower_and_the_memory_keeps_what_it_had(
    tiny_model: TorchDetector, motion_exception: bool
) -> None:
    labelled = racing_square(slice(4, 12))
    model = copy.deepcopy(tiny_model.model)
    before = model.appearance.cells.clone()
    report = learn_labelled_normal(model, labelled, LabelLearning(motion_exception=motion_exception))
    taught = TorchDetector(model, tiny_model.info.metadata)
    assert report["frames"] == len(labelled) and report["cells_added"] > 0
    assert np.allclose(model.appearance.cells[: len(before)].numpy(), before.numpy(), atol=1e-5)
    assert model.config.bank_size == len(before) + report["cells_added"]
    old, new = stream_peaks(tiny_model, labelled), stream_peaks(taught, labelled)
    appearance = TINY_DETECTOR.streams.index("appearance")
    motion = TINY_DETECTOR.streams.index("motion")
    assert new[appearance] < 0.6 * old[appearance]  # within the reach the memory has of its own cells
    if motion_exception:
        assert new[motion] < 0.2 * old[motion] and report["motion_pixels_raised"] > 0
        # the same square racing along other rows is still faster than normal there
        elsewhere = racing_square(slice(22, 30))
        assert stream_peaks(taught, elsewhere)[motion] > 0.5 * stream_peaks(tiny_model, elsewhere)[motion]
    else:
        assert new[motion] == pytest.approx(old[motion])


def test_nothing_labelled_changes_nothing(tiny_model: TorchDetector) -> None:
    model = copy.deepcopy(tiny_model.model)
    empty = np.zeros((0, TINY_DETECTOR.history + 1, TINY_DETECTOR.height, TINY_DETECTOR.width), np.uint8)
    assert learn_labelled_normal(model, empty, LabelLearning()) == {"frames": 0}
    assert model.config.bank_size == TINY_DETECTOR.bank_size


def test_many_labelled_frames_are_thinned_to_max_frames(tiny_model: TorchDetector) -> None:
    model = copy.deepcopy(tiny_model.model)
    report = learn_labelled_normal(model, racing_square(slice(4, 12)), LabelLearning(max_frames=5))
    assert report["frames"] == 5


def test_labelled_frames_fall_into_events_at_gaps_and_segment_changes() -> None:
    indices = np.array([3, 4, 5, 9, 10])
    assert labelled_events(indices).tolist() == [0, 0, 0, 1, 1]
    segments = np.array([0] * 5 + [1] * 6)  # a reconnect between frames 4 and 5
    assert labelled_events(indices, segments).tolist() == [0, 0, 1, 2, 2]


def frame_peaks(detector: TorchDetector, clips: np.ndarray) -> float:
    """The median over clips of the highest value of any stream map: where a frame's evidence is."""
    return float(np.median(detector.stream_maps(clips).max(axis=(1, 2, 3))))


def racing_walker(row: int) -> np.ndarray:
    """One of the scene's dark walkers (looks like what the memory holds) racing along `row` as fast as
    the square: a different thing, anomalous by its speed alone."""
    video = synthetic_video(30, np.random.default_rng(6))
    for t in range(10, 30):
        x = 4 + int(4 * (t - 10)) % (video.shape[2] - 8)
        cv2.circle(video[t], (x, row), 3, 40, -1)
    return padded_clips(video, np.arange(10, 30), TINY_DETECTOR.history)


@pytest.mark.parametrize(
    "test",
    [{"exception_seed_z": 0.0}, {"exception_ratio": 0.0, "exception_seed_z": 0.0}],
    ids=["by ratio", "by reach"],
)
def test_the_cell_exception_quiets_what_was_labelled_and_not_a_different_thing(
    tiny_model: TorchDetector, test: dict[str, float]
) -> None:
    labelled = np.concatenate([racing_square(slice(4, 12)), racing_square(slice(20, 28))])
    events = np.repeat([0, 1], len(labelled) // 2)  # the square seen twice, at two places
    anomaly = anomaly_maps(tiny_model, tiny_model.stream_maps(labelled))
    model = copy.deepcopy(tiny_model.model)
    config = LabelLearning(memory=False, cell_exception=True, **test)
    report = learn_labelled_normal(model, labelled, config, events, anomaly)["cell_exception"]
    assert report["events"] == 2 and report["cells_kept"] > 0 and report["reach"] > 0
    assert model.exception is not None and float(model.exception.seed) == report["seed"] == 0.0
    assert model.config.bank_size == TINY_DETECTOR.bank_size  # the memory is left alone
    taught = TorchDetector(model, tiny_model.info.metadata)
    square, walker = racing_square(slice(12, 20)), racing_walker(16)  # elsewhere again
    assert frame_peaks(taught, square) < 0.1 * frame_peaks(tiny_model, square)
    # the walker as fast as the square keeps most of its evidence
    assert frame_peaks(taught, walker) > 0.75 * frame_peaks(tiny_model, walker)
    # learned again (the next cycle's window holds the same labels): nothing new is kept
    again = learn_labelled_normal(model, labelled, config, events, anomaly)["cell_exception"]
    assert again["cells_kept"] == report["cells_kept"] and again["events"] == 2


def test_a_cell_is_taken_from_more_unusual_than_normal_footage_ever_looks(tiny_model: TorchDetector) -> None:
    labelled = racing_square(slice(4, 12))
    anomaly = anomaly_maps(tiny_model, tiny_model.stream_maps(labelled))
    normal = tiny_model.info.metadata["stream_stats"]["appearance"]
    model = copy.deepcopy(tiny_model.model)
    config = LabelLearning(memory=False, cell_exception=True)  # the default: 6 spreads above the level
    report = learn_labelled_normal(
        model, labelled, config, np.zeros(len(labelled), int), anomaly, None, normal
    )
    assert model.exception is not None
    expected = normal["median"] + 6.0 * normal["scale"]
    assert float(model.exception.seed) == pytest.approx(expected)
    assert report["cell_exception"]["seed"] == pytest.approx(expected, abs=1e-4)
    # without the model's statistics, or at z 0, any matching cell is taken
    assert exception_seed(None, 6.0) == exception_seed(normal, 0.0) == 0.0


def test_a_kind_the_site_accepts_is_excepted_and_a_false_alarm_joins_the_memory(
    tiny_model: TorchDetector,
) -> None:
    square, false_alarm = racing_square(slice(4, 12)), racing_walker(16)
    clips = np.concatenate([square, false_alarm])
    accepted = np.repeat([True, False], [len(square), len(false_alarm)])  # the square has a category
    anomaly = anomaly_maps(tiny_model, tiny_model.stream_maps(clips))
    model = copy.deepcopy(tiny_model.model)
    events = np.repeat([0, 1], [len(square), len(false_alarm)])
    report = learn_labelled_normal(model, clips, LabelLearning(), events, anomaly, accepted)
    assert report["accepted_frames"] == len(square) and report["cells_added"] > 0
    assert report["cell_exception"]["events"] == 1  # the square's cells only
    # without the routing, the accepted kind joins the memory like a false alarm, and nothing is excepted
    plain = copy.deepcopy(tiny_model.model)
    config = LabelLearning(accepted_exception=False)
    assert "cell_exception" not in learn_labelled_normal(plain, clips, config, events, anomaly, accepted)
    assert plain.exception is None and plain.config.bank_size > model.config.bank_size


def test_without_events_or_maps_the_cell_exception_is_not_learned(tiny_model: TorchDetector) -> None:
    model = copy.deepcopy(tiny_model.model)
    report = learn_labelled_normal(model, racing_square(slice(4, 12)), LabelLearning(cell_exception=True))
    assert "cell_exception" not in report and model.exception is None


def test_a_kind_has_one_number_everywhere_and_never_zero() -> None:
    assert kind_key("bicycle") == kind_key(" Bicycle ") != kind_key("skateboard")
    assert all(kind_key(name) > 0 for name in ("bicycle", "skateboard", "", "x" * 40))


def test_a_kind_no_longer_accepted_is_withdrawn_and_everything_else_stays(tiny_model: TorchDetector) -> None:
    """The square accepted twice, under two kinds, then one kind withdrawn: its cells go, the other
    kind's stay and still quiet its frames; with both withdrawn the square scores exactly as before."""
    square = racing_square(slice(4, 12))
    half = len(square) // 2
    kinds = np.repeat([kind_key("cart"), kind_key("bicycle")], [half, len(square) - half])
    events = np.repeat([0, 1], [half, len(square) - half])
    anomaly = anomaly_maps(tiny_model, tiny_model.stream_maps(square))
    model = copy.deepcopy(tiny_model.model)
    config = LabelLearning(exception_seed_z=0.0)
    accepted = np.ones(len(square), bool)
    learn_labelled_normal(model, square, config, events, anomaly, accepted, None, kinds)
    assert model.exception is not None
    tags = model.exception.kinds.clone()
    assert {int(k) for k in tags} == {kind_key("cart"), kind_key("bicycle")}
    assert withdraw_kinds(model, ["cart", "bicycle"], config) is None  # both still accepted
    report = withdraw_kinds(model, ["Bicycle"], config)
    assert report == {
        "cells_withdrawn": int((tags == kind_key("cart")).sum()),
        "cells_kept": int((tags == kind_key("bicycle")).sum()),
    }
    assert {int(k) for k in model.exception.kinds} == {kind_key("bicycle")}
    assert model.config.exception_cells == report["cells_kept"]
    kept, bicycle = TorchDetector(model, tiny_model.info.metadata), square[half:]
    assert frame_peaks(kept, bicycle) < 0.75 * frame_peaks(tiny_model, bicycle)  # still acts
    assert withdraw_kinds(model, [], config) is not None and model.exception is None  # the last kind
    assert model.config.exception_cells == 0 and withdraw_kinds(model, [], config) is None
    np.testing.assert_allclose(  # the flow differs by float noise from run to run
        TorchDetector(model, tiny_model.info.metadata).stream_maps(square),
        tiny_model.stream_maps(square),
        atol=1e-5,
    )


def test_cells_of_no_kind_are_never_withdrawn(tiny_model: TorchDetector) -> None:
    clips = racing_square(slice(4, 12))
    anomaly = anomaly_maps(tiny_model, tiny_model.stream_maps(clips))
    model = copy.deepcopy(tiny_model.model)
    config = LabelLearning(memory=False, cell_exception=True, exception_seed_z=0.0)
    learn_labelled_normal(model, clips, config, np.zeros(len(clips), int), anomaly)  # a false alarm's
    assert model.exception is not None and not model.exception.kinds.any()
    assert withdraw_kinds(model, [], config) is None and model.exception is not None
