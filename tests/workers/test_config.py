"""Settings that cannot work are refused when they are read, with a message that says what to set."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from workers.config import AlertSettings, DetectorSettings, Settings, online_config


def test_the_place_stream_without_motion_is_refused() -> None:
    with pytest.raises(ValidationError, match="add motion"):
        DetectorSettings(streams=["appearance", "place"])
    assert DetectorSettings().streams == ["motion", "appearance", "place"]


def test_alert_frame_counts_of_old_settings_are_refused_with_the_new_names() -> None:
    with pytest.raises(ValidationError, match="VIGIL_ALERTS__START_S"):
        AlertSettings.model_validate({"start_frames": 3})


def test_the_retraining_settings_reach_the_self_training(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_RETRAIN__REGISTER_MOVED_VIEW", "true")
    monkeypatch.setenv("VIGIL_RETRAIN__VIEW_CHECK_FRAMES", "100")
    monkeypatch.setenv("VIGIL_RETRAIN__ETA_S", "0.9")
    monkeypatch.setenv("VIGIL_RETRAIN__REFIT_NORMAL_Z", "3")
    config = online_config(Settings(), seed=4)
    assert config.register_moved_view and config.view_check_frames == 100
    assert config.selftrain.mining.eta_s == 0.9 and config.selftrain.refit_normal_z == 3.0
    assert config.selftrain.seed == 4 and config.detector == Settings().detector.config(240, 360)
    monkeypatch.delenv("VIGIL_RETRAIN__REGISTER_MOVED_VIEW")
    assert not online_config(Settings()).register_moved_view  # off by default
