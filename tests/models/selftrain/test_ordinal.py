"""The ordinal scoring head (added silent, trained on pseudo and operator labels, exported with the
detector) and the category classifier."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from models.detector.export import save_detector
from models.detector.fitting import FitConfig, train_detector
from models.detector.runtime import TorchDetector, load_detector
from models.detector.scores import raw_scores
from models.evaluation.metrics import roc_auc
from models.selftrain.categories import UNKNOWN, fit_categories
from models.selftrain.config import MiningParams, OrdinalConfig, SelfTrainConfig, Window
from models.selftrain.cycle import run_cycle
from models.selftrain.mining import mine, window_evidence
from models.selftrain.ordinal import cell_examples, train_ordinal, with_ordinal
from tests.models.conftest import TINY_DETECTOR, synthetic_video

CONFIG = SelfTrainConfig(
    mining=MiningParams(eta_s=0.8, min_run=3),
    min_normal_frames=5,
    localized_alpha=2.0,
    ordinal=OrdinalConfig(steps=150),
)


@pytest.fixture(scope="module")
def fitted() -> TorchDetector:
    rng = np.random.default_rng(0)
    videos = {"a": synthetic_video(40, rng), "b": synthetic_video(40, rng)}
    return train_detector(videos, TINY_DETECTOR, {}, FitConfig()).detector


def labelled_window(seed: int = 3) -> tuple[Window, np.ndarray]:
    frames = synthetic_video(80, np.random.default_rng(seed), anomaly=(40, 79))
    truth = np.arange(80) >= 40
    labels = np.full(80, -1)
    labels[45:50] = 1  # an operator confirmed a few frames of the anomaly
    labels[10:15] = 0  # and said these were normal
    return Window(frames, np.zeros(80, dtype=int), labels), truth


def test_an_added_head_is_silent_and_changes_no_other_stream(fitted: TorchDetector) -> None:
    extended = with_ordinal(fitted.model)
    assert (
        extended.config.streams == (*fitted.model.config.streams, "ordinal") and fitted.model.ordinal is None
    )
    window, _ = labelled_window()
    clips = window.clips(np.arange(20, 30), fitted.info.history)
    speed = torch.from_numpy(np.zeros((10, *clips.shape[2:]), np.float32))
    with torch.inference_mode():
        before = fitted.model(torch.from_numpy(clips), speed)
        after = extended(torch.from_numpy(clips), speed)
    torch.testing.assert_close(after[:, :-1], before)
    assert float(after[:, -1].max()) < 0.01


def test_the_head_learns_the_labelled_anomaly(fitted: TorchDetector) -> None:
    window, truth = labelled_window()
    model = with_ordinal(fitted.model)
    mined = mine(window, window_evidence(fitted, window), CONFIG)
    rng = np.random.default_rng(0)
    examples = cell_examples(model, window, mined, window_evidence(fitted, window).maps, CONFIG.ordinal, rng)
    assert examples.counts()["positive"] > 0 and examples.counts()["negative"] > 0
    report = train_ordinal(model, examples, CONFIG.ordinal)
    assert report["steps"] == CONFIG.ordinal.steps
    clips = window.clips(np.arange(80), fitted.info.history)
    with torch.inference_mode():
        maps = model(torch.from_numpy(clips), torch.from_numpy(np.zeros((80, *clips.shape[2:]), np.float32)))
    degree = maps[:, -1].flatten(1).max(1).values.numpy()
    assert roc_auc(truth, degree) > 0.9


def test_a_cycle_with_labelled_anomalies_adds_and_trains_the_head(
    fitted: TorchDetector, tmp_path: Path
) -> None:
    window, _ = labelled_window()
    result = run_cycle(fitted.model, fitted.info.metadata, fitted, window, [], CONFIG)
    assert result.report["training"]["ordinal"]["positive"] > 0
    if not result.accepted:  # validated like any candidate; this one must at least be well-formed
        pytest.skip(f"candidate refused: {result.reason}")
    assert result.metadata is not None and result.metadata["streams"] == [*fitted.info.streams, "ordinal"]
    assert result.metadata["stream_stats"]["ordinal"]["scale"] >= 0.05
    for suffix in (".pt", ".onnx"):
        save_detector(result.model, result.metadata, tmp_path / f"head{suffix}")
    onnx = load_detector(tmp_path / "head.onnx", "cpu", 1)
    torch_model = load_detector(tmp_path / "head.pt", "cpu", 1)
    clips = window.clips(np.arange(40, 48), fitted.info.history)
    # the same scores; the same maps but for float rounding
    np.testing.assert_allclose(
        raw_scores(onnx, onnx.stream_maps(clips)),
        raw_scores(torch_model, torch_model.stream_maps(clips)),
        atol=1e-3,
    )
    # the maps too, but for the rounding of a cell's distance to itself: its square root (near 0) turns 1e-5
    # into 0.006, and the upsampling of the cell grid carries that to the pixels around
    np.testing.assert_allclose(onnx.stream_maps(clips), torch_model.stream_maps(clips), atol=1e-2)
    no_labels = replace(window, labels=None)
    plain = run_cycle(fitted.model, fitted.info.metadata, fitted, no_labels, [], CONFIG)
    assert "ordinal" not in plain.report.get("training", {})  # without labelled anomalies: no head


def test_categories_from_a_few_examples_and_unknown_far_from_all() -> None:
    rng = np.random.default_rng(0)
    bikes = rng.normal(0.0, 0.1, (3, 8)) + 1.0
    carts = rng.normal(0.0, 0.1, (2, 8)) - 1.0
    model = fit_categories(np.r_[bikes, carts], ["bicycle"] * 3 + ["cart"] * 2)
    assert model is not None and model.categories == ["bicycle", "cart"]
    category, confidence = model.predict(np.full(8, 0.9))
    assert category == "bicycle" and confidence > 0.9
    assert model.predict(np.full(8, -1.1))[0] == "cart"
    assert model.predict(np.full(8, 50.0))[0] == UNKNOWN  # like nothing labelled so far
    assert fit_categories(bikes, ["bicycle"] * 3) is None  # one category: nothing to tell apart
