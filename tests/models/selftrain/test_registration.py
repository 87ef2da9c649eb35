"""A moved camera's view registered to the model's: the warp found between two backgrounds, and the maps of
the view carried by it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from models.detector.runtime import TorchDetector
from models.selftrain.registration import (
    BACKGROUND_CORRELATION,
    registered_model,
    view_background,
    view_warp,
    warp_zoom,
    warped_map,
    warped_row_scale,
)
from tests.models.conftest import HEIGHT, TINY_DETECTOR, WIDTH
from tests.models.selftrain.test_cycle import fitted


@pytest.fixture(scope="module")
def tiny_model() -> TorchDetector:
    return fitted(TINY_DETECTOR)


def textured_site(height: int = 96, width: int = 128, seed: int = 0) -> np.ndarray:
    """float32 [H, W]: a site with structure at several scales (paving, kerbs, a lawn)."""
    rng = np.random.default_rng(seed)
    coarse = cv2.resize(rng.uniform(0, 255, (height // 16, width // 16)).astype(np.float32), (width, height))
    fine = cv2.GaussianBlur(rng.uniform(0, 255, (height, width)).astype(np.float32), (0, 0), 2.0)
    return (0.6 * coarse + 0.4 * fine).astype(np.float32)


def moved(
    image: np.ndarray, zoom: float, angle: float, shift: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    height, width = image.shape
    warp = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), angle, zoom)
    warp[:, 2] += shift
    return cv2.warpAffine(image, warp, (width, height), borderMode=cv2.BORDER_REPLICATE), warp


def test_the_background_leaves_out_what_passes() -> None:
    frames = np.full((5, 4, 4), 100, np.uint8)
    frames[1, 0, 0] = frames[3, 2, 2] = 255  # a walker, in one frame here and one there
    np.testing.assert_array_equal(view_background(frames), np.full((4, 4), 100, np.float32))


def test_a_zoomed_turned_and_shifted_view_is_found() -> None:
    site = textured_site()
    current, truth = moved(site, 1.08, 4.0, (3.0, -2.0))
    found = view_warp(site, current)
    assert found is not None
    warp, correlation = found
    assert correlation > BACKGROUND_CORRELATION
    np.testing.assert_allclose(warp, truth, atol=0.05 * np.abs(truth).max())
    assert warp_zoom(warp) == pytest.approx(1.08, abs=0.005)


def test_a_view_upside_down_or_of_another_site_does_not_register() -> None:
    site = textured_site()
    for other in (np.ascontiguousarray(site[::-1, ::-1]), textured_site(seed=5)):
        found = view_warp(site, other)
        assert found is None or found[1] < BACKGROUND_CORRELATION


def test_a_map_is_carried_where_the_warp_takes_its_pixels() -> None:
    values = np.zeros((8, 10), np.float32)
    values[2, 3] = 1.0
    shift = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 1.0]], np.float32)  # 2 px right, 1 down
    carried = warped_map(values, shift)
    assert carried[3, 5] == pytest.approx(1.0) and carried.sum() == pytest.approx(1.0)
    edge = warped_map(np.tile(np.arange(10, dtype=np.float32), (8, 1)), shift)
    assert edge[0, 0] == 0.0  # pixels the old view did not see take its edge's value


def test_the_row_scale_follows_the_rows_and_peaks_at_one() -> None:
    row_scale = np.linspace(0.2, 1.0, 10, dtype=np.float32)
    down = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 2.0]], np.float32)  # the view moved up: rows 2 lower
    carried = warped_row_scale(row_scale, down, width=6)
    np.testing.assert_allclose(carried[2:], row_scale[:-2] / row_scale[-3], rtol=1e-5)
    assert carried.max() == pytest.approx(1.0)


def test_a_registered_model_carries_its_maps_and_speeds_and_leaves_the_rest(
    tiny_model: TorchDetector,
) -> None:
    model, metadata = tiny_model.model, tiny_model.info.metadata
    zoom_in = cv2.getRotationMatrix2D(((WIDTH - 1) / 2, (HEIGHT - 1) / 2), 0.0, 1.25)
    registered, carried = registered_model(model, metadata, zoom_in)
    assert registered is not model and carried is not metadata
    expected = (
        warped_map(model.motion.normal_speed.numpy(), zoom_in) * 1.25
    )  # things look larger, move faster
    np.testing.assert_allclose(registered.motion.normal_speed.numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(
        registered.place.rarity.numpy(), warped_map(model.place.rarity.numpy(), zoom_in), rtol=1e-5
    )
    assert registered.anchors.shape == model.anchors.shape and registered.anchors.dtype == np.uint8
    np.testing.assert_array_equal(registered.appearance.memory.numpy(), model.appearance.memory.numpy())
    assert registered.motion.row_scale.numpy().max() == pytest.approx(1.0)
    assert model.motion.normal_speed.numpy() is not registered.motion.normal_speed.numpy()
