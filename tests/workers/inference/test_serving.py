"""Which detector an inference worker serves, and a warning where a model's flow does not fit the cameras'
analysis rate."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from models.detector.export import model_metadata, save_detector
from tests.models.conftest import TINY_DETECTOR
from tests.models.detector.test_runtime import tiny_detector
from workers.config import Settings
from workers.inference.serving import load_serving_detector


def pinned(tmp_path: Path, gap: int) -> Settings:
    """Settings that pin a tiny model whose flow spans `gap` frames."""
    config = replace(TINY_DETECTOR, flow=replace(TINY_DETECTOR.flow, gap=gap))
    detector = tiny_detector(0, config)
    path = tmp_path / f"gap{gap}.pt"
    save_detector(detector.model, {**detector.info.metadata, **model_metadata(config, {})}, path)
    settings = Settings(data_dir=tmp_path)
    settings.inference.model_path = path
    return settings


@pytest.mark.parametrize(("gap", "warned"), [(2, False), (1, True)])
def test_a_model_fitted_at_another_frame_rate_is_served_with_a_warning(
    redis_client: redis.Redis, tmp_path: Path, caplog: pytest.LogCaptureFixture, gap: int, warned: bool
) -> None:
    with caplog.at_level(logging.WARNING, logger="workers.inference.serving"):
        detector, _ = load_serving_detector(pinned(tmp_path, gap), redis_client)  # analysed at 10 frames/s
    assert detector.info.history == gap
    assert ("measures the flow over 1 frames" in caplog.text) is warned
