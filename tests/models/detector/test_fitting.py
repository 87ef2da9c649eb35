"""Fitting detectors on generated footage: the streams separate an injected anomaly; the prediction
stream's U-Net training (pseudo anomalies, checkpoints, resume)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.detector.fitting import FitConfig, fit_detector, train_detector
from models.detector.predictor_training import TrainConfig, train_predictor
from models.detector.pseudo import ClipSampler, PseudoAnomalyConfig
from models.detector.streams import DetectorConfig
from models.evaluation.metrics import roc_auc
from models.evaluation.videos import score_video
from tests.models.conftest import TINY_DETECTOR, TINY_NETWORK, TINY_PREDICTING, synthetic_video


def normal_videos(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [synthetic_video(40, rng) for _ in range(3)]


def test_pseudo_anomalies_keep_the_clip_shape_and_vary() -> None:
    config = PseudoAnomalyConfig(skip_probability=0.3, patch_probability=0.3, padding_probability=0.3)
    sampler = ClipSampler(normal_videos(), TINY_NETWORK.history, config, np.random.default_rng(0))
    batch, offsets = sampler.batch(32)
    assert batch.shape == (32, TINY_NETWORK.history + 1, TINY_NETWORK.height, TINY_NETWORK.width)
    assert batch.dtype == np.uint8 and offsets == [(0, 0)] * 32
    crops, offsets = sampler.batch(4, crop=(16, 24))
    assert crops.shape == (4, TINY_NETWORK.history + 1, 16, 24)
    assert all(0 <= y <= 16 and 0 <= x <= 24 for y, x in offsets)


def test_the_memory_is_chosen_from_cells_of_every_frame() -> None:
    import torch

    videos = {f"v{i}": frames for i, frames in enumerate(normal_videos())}
    # 2 cells offered per frame: 240 candidates for a memory of 32, none of them needed twice
    fitted = fit_detector(videos, TINY_DETECTOR, FitConfig(pool_cells=240))
    assert fitted.model.appearance is not None
    cells = fitted.model.appearance.cells
    assert len(torch.unique(cells, dim=0)) == TINY_DETECTOR.bank_size


@pytest.mark.parametrize("config", [TINY_DETECTOR, TINY_PREDICTING], ids=["motion+appearance", "all streams"])
def test_a_fitted_detector_separates_an_injected_anomaly(config: DetectorConfig) -> None:
    videos = {f"v{i}": frames for i, frames in enumerate(normal_videos())}
    fit = FitConfig(train=TrainConfig(minutes=None, epochs=12, batch_size=8, seed=0))
    trained = train_detector(videos, config, {"dataset": "synthetic"}, fit)
    metadata = trained.metadata
    assert set(metadata["stream_stats"]) == set(config.streams) and metadata["calibration"]["scale"] > 0
    assert metadata["training"]["frames"] == 120
    test = synthetic_video(60, np.random.default_rng(7), anomaly=(30, 59))
    labels = np.arange(60) >= 30
    scored = score_video(trained.detector, test, fps=10)
    assert roc_auc(labels, scored.raw) > 0.9
    assert roc_auc(labels, scored.scores) > 0.9


def test_fitting_needs_frames() -> None:
    with pytest.raises(ValueError, match="no frames"):
        fit_detector({"empty": np.zeros((0, 32, 48), np.uint8)}, TINY_DETECTOR)


def test_resume_continues_from_the_checkpoint(tmp_path: Path) -> None:
    checkpoint = tmp_path / "model.ckpt"
    first = train_predictor(
        normal_videos(),
        TINY_NETWORK,
        PseudoAnomalyConfig(),
        TrainConfig(minutes=None, epochs=1, batch_size=8),
        checkpoint,
    )
    assert checkpoint.is_file()
    resumed = train_predictor(
        normal_videos(),
        TINY_NETWORK,
        PseudoAnomalyConfig(),
        TrainConfig(minutes=None, epochs=2, batch_size=8),
        checkpoint,
        resume=True,
    )
    assert resumed.steps == 2 * first.steps
