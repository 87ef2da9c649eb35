"""Settings that cannot work are refused when they are read, with a message that says what to set."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from workers.config import AlertSettings, DetectorSettings


def test_the_place_stream_without_motion_is_refused() -> None:
    with pytest.raises(ValidationError, match="add motion"):
        DetectorSettings(streams=["appearance", "place"])
    assert DetectorSettings().streams == ["motion", "appearance", "place"]


def test_alert_frame_counts_of_old_settings_are_refused_with_the_new_names() -> None:
    with pytest.raises(ValidationError, match="VIGIL_ALERTS__START_S"):
        AlertSettings.model_validate({"start_frames": 3})
