from __future__ import annotations

from pathlib import Path

import numpy as np

from models.evaluation import fit_calibration, score_video
from models.metrics import roc_auc
from models.pseudo import ClipSampler, PseudoAnomalyConfig
from models.runtime import TorchDetector, model_metadata
from models.training import TrainConfig, train_predictor
from tests.models.conftest import TINY_NETWORK, synthetic_video


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


def test_tiny_training_separates_an_injected_anomaly() -> None:
    config = TrainConfig(minutes=None, epochs=12, batch_size=8, seed=0)
    result = train_predictor(normal_videos(), TINY_NETWORK, PseudoAnomalyConfig(), config)
    metadata = model_metadata(TINY_NETWORK, None, patch=8, extra={"version": "tiny", "metrics": {}})
    calibration = fit_calibration(TorchDetector(result.model, metadata), {"a": normal_videos(1)[0]})
    detector = TorchDetector(result.model, {**metadata, "calibration": calibration.to_dict()})
    test = synthetic_video(60, np.random.default_rng(7), anomaly=(30, 59))
    labels = np.arange(60) >= 30
    scored = score_video(detector, test)
    assert roc_auc(labels, scored.raw) > 0.9
    assert roc_auc(labels, scored.scores) > 0.9


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
