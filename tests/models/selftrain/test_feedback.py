"""Frames an operator labelled normal, learned at once: a labelled false alarm scores lower where it was,
what the model knew stays, and the same event elsewhere still stands out."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from models.detector.fitting import FitConfig, train_detector
from models.detector.runtime import TorchDetector
from models.scoring.camera import padded_clips
from models.selftrain.config import LabelLearning
from models.selftrain.feedback import learn_labelled_normal
from tests.models.conftest import TINY_DETECTOR, synthetic_video


@pytest.fixture(scope="module")
def tiny_model() -> TorchDetector:
    rng = np.random.default_rng(0)
    videos = {"a": synthetic_video(40, rng), "b": synthetic_video(40, rng)}
    return train_detector(videos, TINY_DETECTOR, {}, FitConfig()).detector


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
