"""The changed copies' light: what a camera whose automatic exposure hunts, fog and a shadow do to its
frames."""

from __future__ import annotations

import numpy as np

from benchmarks.site_changes import (
    EXPOSURE_RAMP,
    HAZE_LEVEL,
    SITE_CHANGES,
    UNCHANGED,
    changed_frame,
    exposure_gains,
)

IDENTITY_LUT = np.arange(256, dtype=np.uint8)


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


def changed(image: np.ndarray, change: dict[str, float]) -> np.ndarray:
    return changed_frame(image, change, IDENTITY_LUT, np.random.default_rng(0)).astype(np.float64)


def test_fog_halves_the_contrast_towards_its_veil() -> None:
    image = np.tile(np.arange(0, 240, 10, dtype=np.uint8), (16, 1))
    fogged = changed(image, SITE_CHANGES["fog"])
    np.testing.assert_allclose(fogged, np.floor(image * 0.5 + 0.5 * HAZE_LEVEL), atol=1)
    assert np.ptp(fogged) == np.ptp(image) // 2


def test_a_shadow_darkens_the_left_third_only() -> None:
    image = np.full((40, 120), 200, np.uint8)
    shaded = changed(image, SITE_CHANGES["shadow"])
    assert abs(shaded[:, :30].mean() - 200 * 0.55) < 2  # deep in the shadow
    np.testing.assert_array_equal(shaded[:, 60:], 200)  # far from its edge, as it was
    assert (np.diff(shaded[0]) >= 0).all()  # a soft edge, no step back


def test_no_light_change_leaves_a_frame_as_it_was() -> None:
    image = np.random.default_rng(1).integers(0, 256, (24, 36)).astype(np.uint8)
    np.testing.assert_array_equal(changed(image, UNCHANGED), image)
