"""The optical flow's settings follow how many pixels the footage has."""

from __future__ import annotations

from models.detector.flow import FlowConfig
from tests.models.conftest import HEIGHT, TINY_DETECTOR, WIDTH


def test_full_resolution_flow_only_where_the_footage_has_the_pixels() -> None:
    analysis = (240, 360)
    assert FlowConfig.for_source((240, 360), analysis).finest_scale == 0  # native: full resolution
    assert FlowConfig.for_source((1080, 1920), analysis).finest_scale == 0  # downscaled
    assert FlowConfig.for_source((1080, 1920), analysis).refinement_iterations == 0  # what costs most there
    for upscaled in ((158, 238), (240, 300), (200, 360)):  # either side short: interpolated pixels
        assert FlowConfig.for_source(upscaled, analysis) == FlowConfig()
    assert FlowConfig.for_source(None, analysis) == FlowConfig()  # unknown: as before


def test_a_detector_for_a_source_changes_its_flow_only() -> None:
    native = TINY_DETECTOR.for_source((HEIGHT, WIDTH))
    assert native.flow.finest_scale == 0 and native.flow.gap == TINY_DETECTOR.flow.gap
    assert native.bank_size == TINY_DETECTOR.bank_size and native.streams == TINY_DETECTOR.streams
    assert TINY_DETECTOR.for_source((HEIGHT // 2, WIDTH // 2)).flow == FlowConfig()
