"""The optical flow's settings follow how many pixels the footage has, and its frame rate; a swaying
camera's own motion is taken out of it."""

from __future__ import annotations

import cv2
import numpy as np

from models.detector.flow import FlowConfig, _dis, flow_speed, gap_for, view_motion
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


def textured(height: int = 96, width: int = 128, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).integers(0, 255, (height, width)).astype(np.uint8)
    return cv2.GaussianBlur(noise, (7, 7), 0)


def shifted(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    warp = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(image, warp, image.shape[::-1], borderMode=cv2.BORDER_REFLECT)


def test_a_swaying_camera_s_motion_is_taken_out_and_what_moves_against_it_stays() -> None:
    view = textured()
    moved = shifted(view, 2.0, -1.0)  # the whole view moved: the camera swayed
    moved[30:70, 40:90] = shifted(view, 6.0, -1.0)[30:70, 40:90]  # and something moved 4 px against it
    steadied, plain = FlowConfig(gap=1), FlowConfig(gap=1, steadied=False)
    motion = view_motion(_dis(plain).calc(view, moved, None), gap=1)
    assert motion is not None and np.allclose(motion, (2.0, -1.0), atol=0.2)
    speed, unsteadied = flow_speed(view, moved, steadied), flow_speed(view, moved, plain)
    assert np.median(unsteadied) > 1.8 and np.median(speed) < 0.3  # the background stands still again
    assert np.median(speed[40:60, 55:75]) > 3.0  # the object's own motion


def test_a_camera_that_stands_still_keeps_its_flow() -> None:
    view = textured()
    moved = view.copy()
    moved[40:56, 60:76] = shifted(view, 3.0, 0.0)[40:56, 60:76]
    steadied, plain = FlowConfig(gap=2), FlowConfig(gap=2, steadied=False)
    assert np.allclose(flow_speed(view, moved, steadied), flow_speed(view, moved, plain), atol=1e-5)


def test_one_thing_filling_half_the_view_is_not_taken_for_the_camera() -> None:
    view = textured()
    moved = view.copy()
    moved[:, :72] = shifted(view, 3.0, 0.0)[:, :72]  # a train filling 56% of a fixed camera's view
    steadied, plain = FlowConfig(gap=1), FlowConfig(gap=1, steadied=False)
    assert np.median(_dis(plain).calc(view, moved, None)[..., 0]) > 2.0  # the median is the train's
    assert np.allclose(flow_speed(view, moved, steadied), flow_speed(view, moved, plain), atol=1e-5)
    assert np.median(flow_speed(view, moved, steadied)[:, 90:]) < 0.3  # the platform still stands


def test_models_saved_before_the_steadied_flow_score_as_they_did() -> None:
    saved = {key: value for key, value in FlowConfig().to_dict().items() if key != "steadied"}
    assert FlowConfig.from_dict(saved).steadied is False
    assert FlowConfig.from_dict(FlowConfig().to_dict()) == FlowConfig()
