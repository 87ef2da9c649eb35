"""The changed copies' exposure: what a camera whose automatic exposure hunts does to its frames."""

from __future__ import annotations

import numpy as np

from benchmarks.site_changes import EXPOSURE_RAMP, UNCHANGED, exposure_gains


def test_a_steady_exposure_keeps_every_frame_s_gain() -> None:
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(exposure_gains(50, UNCHANGED, rng), np.ones(50))
    assert rng.uniform() == np.random.default_rng(0).uniform()  # and draws nothing


def test_a_hunting_exposure_ramps_to_a_new_gain_every_period() -> None:
    change = {**UNCHANGED, "exposure_swing": 0.4, "exposure_period": 10}
    gains = exposure_gains(25, change, np.random.default_rng(3))
    assert ((gains >= 0.6) & (gains <= 1.4)).all()
    targets = gains[[EXPOSURE_RAMP - 1, 10 + EXPOSURE_RAMP - 1, 20 + EXPOSURE_RAMP - 1]]
    for start, target in zip((0, 10, 20), targets, strict=True):
        np.testing.assert_allclose(gains[start + EXPOSURE_RAMP - 1 : start + 10], target)  # held
    # a ramp goes linearly from the last gain held to the next
    np.testing.assert_allclose(
        np.diff(gains[9 : 10 + EXPOSURE_RAMP]), (targets[1] - targets[0]) / EXPOSURE_RAMP
    )
    np.testing.assert_allclose(gains[0], 1.0 + (targets[0] - 1.0) / EXPOSURE_RAMP)
