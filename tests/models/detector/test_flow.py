"""The optical flow's settings follow how many pixels the footage has, and its frame rate."""

from __future__ import annotations

from models.detector.flow import FlowConfig, gap_for
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


def test_the_flow_spans_a_fifth_of_a_second_whatever_the_frame_rate() -> None:
    assert [gap_for(fps) for fps in (5, 7, 8, 10, 12.5, 15, 25, 30)] == [1, 1, 2, 2, 3, 3, 5, 6]
    assert gap_for(None) == gap_for(0) == FlowConfig().gap == 2  # not known: as chosen at 10 frames/s
    assert gap_for(1) == 1  # never less than a frame
    flow = FlowConfig.for_source((240, 360), (240, 360), fps=5.0)
    assert flow.gap == 1 and flow.finest_scale == 0
    half = TINY_DETECTOR.for_source((HEIGHT // 2, WIDTH // 2), fps=25.0)
    assert half.flow.gap == 5 and half.history == 5  # clips carry the frames the flow reaches back to
