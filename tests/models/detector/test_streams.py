"""Every stream combination through fit, export, load and scoring; the motion stream's perspective."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from models.detector.base import MOTION_STREAMS
from models.detector.fitting import FitConfig, train_detector
from models.detector.predictor import NetworkConfig
from models.detector.predictor_training import TrainConfig
from models.detector.runtime import OnnxDetector, TorchDetector, load_detector
from models.detector.scores import patch_max_scores, perspective_patches, stream_patch_scores
from models.detector.streams import MIN_ROW_SCALE, DetectorNet, fit_row_scale
from models.evaluation.jobs import save_trained
from models.evaluation.videos import score_video
from tests.models.conftest import HEIGHT, TINY_DETECTOR, TINY_NETWORK, WIDTH, synthetic_video

COMBINATIONS = [
    ("motion",),
    ("appearance",),
    ("motion", "appearance"),
    ("motion", "place"),
    ("motion", "appearance", "place"),
    ("motion", "appearance", "prediction"),
]


@pytest.mark.parametrize("streams", COMBINATIONS, ids="-".join)
@pytest.mark.parametrize("suffix", [".onnx", ".pt"])
def test_every_stream_combination_fits_exports_loads_and_scores(
    tmp_path: Path, streams: tuple[str, ...], suffix: str
) -> None:
    rng = np.random.default_rng(0)
    predictor: NetworkConfig | None = TINY_NETWORK if "prediction" in streams else None
    config = replace(TINY_DETECTOR, streams=streams, predictor=predictor)
    fit = FitConfig(train=TrainConfig(minutes=None, epochs=0.2, batch_size=4))
    videos = {"a": synthetic_video(24, rng), "b": synthetic_video(24, rng)}
    trained = train_detector(videos, config, {"dataset": "synthetic"}, fit)
    path = tmp_path / f"model{suffix}"
    save_trained(trained, path)
    loaded = load_detector(path, device="cpu", threads=1)  # loading runs the model on its declared input
    assert isinstance(loaded, OnnxDetector if suffix == ".onnx" else TorchDetector)
    assert loaded.info.streams == list(streams)
    test = synthetic_video(12, rng, anomaly=(6, 11))
    served, fitted = (
        score_video(loaded, test, batch_size=5, fps=10),
        score_video(trained.detector, test, batch_size=5, fps=10),
    )
    assert np.isfinite(served.scores).all() and ((served.scores >= 0) & (served.scores <= 1)).all()
    np.testing.assert_allclose(served.raw, fitted.raw, atol=1e-2)
    if suffix == ".onnx":  # a graph takes the inputs it reads: clips without motion alone, speed with motion
        assert isinstance(loaded, OnnxDetector)
        assert ("speed" in loaded.input_names) == ("motion" in streams)
        assert ("clips" in loaded.input_names) == bool(set(streams) - set(MOTION_STREAMS))


def test_the_row_scale_follows_a_linear_perspective_and_is_floored() -> None:
    rows = np.arange(100, dtype=np.float64)
    typical = 0.02 * rows  # things move (and look) 50 times larger at the bottom than at the top
    motion = 1.0 + rows  # more of them near the camera
    scale = fit_row_scale(motion, motion * typical)  # sum(s^2) / sum(s) per row = typical
    assert scale.shape == (100,) and scale.max() == pytest.approx(1.0)
    np.testing.assert_allclose(scale[40:], rows[40:] / 99, atol=1e-4)
    assert scale.min() == pytest.approx(MIN_ROW_SCALE) and (np.diff(scale) >= 0).all()
    # no perspective, or no motion at all: one scale for the view
    np.testing.assert_allclose(fit_row_scale(motion, motion * 0.7), 1.0, atol=1e-5)
    np.testing.assert_array_equal(fit_row_scale(np.zeros(100), np.zeros(100)), 1.0)


def test_patches_per_row_score_like_one_patch_where_they_are_all_the_same() -> None:
    maps = np.random.default_rng(0).random((3, HEIGHT, WIDTH)).astype(np.float32)
    for side in (4, 7, 8):
        np.testing.assert_allclose(
            patch_max_scores(maps, np.full(HEIGHT, side)), patch_max_scores(maps, side), rtol=1e-5
        )
    # a small bright object far away (top rows): a small patch there keeps its evidence undiluted
    far = np.zeros((1, HEIGHT, WIDTH), np.float32)
    far[0, 2:6, 10:14] = 1.0
    sides = perspective_patches(16, np.where(np.arange(HEIGHT) < HEIGHT // 2, 0.25, 1.0))
    assert sides[0] == 4 and sides[-1] == 16
    assert patch_max_scores(far, sides)[0] == pytest.approx(1.0)
    assert patch_max_scores(far, 16)[0] == pytest.approx(16 / 256)
    both = stream_patch_scores(np.stack([far, far], axis=1), [sides, 16])
    np.testing.assert_allclose(both[0], [1.0, 16 / 256], rtol=1e-5)


def test_motion_weights_saved_before_the_row_scale_load_with_one_scale() -> None:
    model = DetectorNet(replace(TINY_DETECTOR, streams=("motion",)))
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("row_scale")}
    fresh = DetectorNet(replace(TINY_DETECTOR, streams=("motion",)))
    fresh.motion.row_scale.fill_(0.5)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.motion.row_scale, torch.ones(HEIGHT, 1))


def test_the_appearance_stream_takes_frames_at_its_footage_s_brightness_and_contrast() -> None:
    rng = np.random.default_rng(1)
    config = replace(TINY_DETECTOR, streams=("appearance",))
    videos = {"a": synthetic_video(24, rng), "b": synthetic_video(24, rng)}
    trained = train_detector(videos, config, {"dataset": "synthetic"}, FitConfig())
    appearance = trained.detector.model.appearance
    frames = np.concatenate(list(videos.values())).reshape(48, -1)
    assert float(appearance.brightness) == pytest.approx(frames.mean() / 255.0, rel=1e-3)
    assert float(appearance.contrast) == pytest.approx(frames.std(axis=1).mean() / 255.0, rel=1e-3)
    frame = torch.from_numpy(synthetic_video(1, rng)).float()[:, None] / 255.0
    darker = frame * 0.6  # the camera's exposure turned down: nothing saturates
    fogged = frame * 0.5 + 0.4  # half the contrast under a bright veil
    with torch.inference_mode():
        for changed in (darker, fogged):
            np.testing.assert_allclose(appearance(changed).numpy(), appearance(frame).numpy(), atol=1e-3)
        # a covered lens is not lit up into noise: its sensor's noise is stretched 4 times at most
        covered = 1.0 / 255.0 + torch.from_numpy(rng.normal(0.0, 0.5 / 255.0, frame.shape)).float()
        assert float(appearance.exposed(covered).std()) <= 4.0 * float(covered.std()) + 1e-6
        appearance.contrast.zero_()  # as weights fitted before the contrast: one gain to the brightness
        np.testing.assert_allclose(appearance(darker).numpy(), appearance(frame).numpy(), atol=1e-3)
        assert not np.allclose(appearance(fogged).numpy(), appearance(frame).numpy(), atol=1e-2)
        appearance.brightness.zero_()  # as weights saved before either: frames taken as they come
        assert not np.allclose(appearance(darker).numpy(), appearance(frame).numpy(), atol=1e-2)


def test_appearance_weights_saved_before_the_brightness_take_frames_as_they_come() -> None:
    model = DetectorNet(replace(TINY_DETECTOR, streams=("appearance",)))
    state = {k: v for k, v in model.state_dict().items() if not k.endswith(("brightness", "contrast"))}
    fresh = DetectorNet(replace(TINY_DETECTOR, streams=("appearance",)))
    fresh.appearance.brightness.fill_(0.5)
    fresh.appearance.contrast.fill_(0.2)
    fresh.load_state_dict(state)
    assert float(fresh.appearance.brightness) == 0.0 and float(fresh.appearance.contrast) == 0.0


def test_a_fit_may_match_the_brightness_alone() -> None:
    rng = np.random.default_rng(2)
    videos = {"a": synthetic_video(16, rng)}
    config = replace(TINY_DETECTOR, streams=("appearance",))
    appearance = train_detector(videos, config, {}, FitConfig(match_contrast=False)).detector.model.appearance
    assert float(appearance.brightness) > 0 and float(appearance.contrast) == 0.0
