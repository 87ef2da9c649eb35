"""Each camera's own view within one site model: its maps kept in the metadata, its motion and place maps
made as the graph's streams make them, a fit to two cameras' footage, and frames scored as their camera."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from models.detector.export import save_detector
from models.detector.fitting import MIN_VIEW_FRAMES, fit_detector, train_detector
from models.detector.flow import clip_speeds
from models.detector.place import PlaceStream
from models.detector.runtime import load_detector
from models.detector.scores import (
    ScoreCalibration,
    camera_patch_scores,
    combined_scores,
    in_site_units,
    raw_scores,
    stream_patch_scores,
)
from models.detector.streams import DetectorConfig, MotionStream
from models.detector.views import CAMERA_VIEWS, CameraView, decode_map, encode_map
from models.scoring.camera import CameraStream, padded_clips
from tests.models.conftest import HEIGHT, WIDTH, two_camera_footage, walker_video

STREAMS = ("motion", "place")


def test_a_map_is_kept_as_float16_and_read_back() -> None:
    values = np.random.default_rng(0).uniform(0, 5, (6, 9)).astype(np.float32)
    back = decode_map(encode_map(values))
    assert back.dtype == np.float32 and back.shape == (6, 9)
    assert np.allclose(back, values, rtol=1e-3)


def test_a_views_motion_and_place_maps_are_the_graph_streams_maps() -> None:
    rng = np.random.default_rng(1)
    speed = rng.uniform(0, 3, (2, 4, 5)).astype(np.float32)
    view = CameraView(
        normal_speed=rng.uniform(0, 1, (4, 5)).astype(np.float32),
        row_scale=np.array([0.25, 0.5, 0.75, 1.0], dtype=np.float32),
        rarity=rng.uniform(0, 3, (4, 5)).astype(np.float32),
        typical=1.7,
        stream_stats={"motion": ScoreCalibration(1.0, 0.5)},
        calibration=ScoreCalibration(0.0, 1.5),
    )
    motion, place = MotionStream(4, 5), PlaceStream(4, 5)
    motion.normal_speed.copy_(torch.from_numpy(view.normal_speed))
    motion.row_scale.copy_(torch.from_numpy(view.row_scale)[:, None])
    place.fit(view.rarity, view.typical)
    with torch.inference_mode():
        expected_motion = motion(torch.from_numpy(speed)).numpy()
        expected_place = place(torch.from_numpy(speed) / motion.row_scale).numpy()
    assert np.allclose(view.motion_map(speed), expected_motion, atol=1e-6)
    assert np.allclose(view.place_map(speed), expected_place, atol=1e-6)
    again = CameraView.from_dict(view.to_dict())
    assert again.typical == view.typical and again.stream_stats == view.stream_stats
    assert again.calibration == view.calibration and np.allclose(again.rarity, view.rarity, rtol=1e-3)


def test_a_fit_to_two_cameras_keeps_each_cameras_own_view() -> None:
    videos, cameras = two_camera_footage()
    config = DetectorConfig(height=HEIGHT, width=WIDTH, streams=STREAMS)
    fitted = fit_detector(videos, config, cameras=cameras)
    assert set(fitted.views) == {"path", "lane"}
    path, lane = fitted.views["path"].rarity, fitted.views["lane"].rarity
    assert path is not None and lane is not None
    # each camera's place map knows its own path only; the site's knows both
    site = fitted.model.place.rarity.numpy()
    quarter, three_quarters = round(WIDTH * 0.25), round(WIDTH * 0.75)
    assert path[:, quarter].mean() < lane[:, quarter].mean()
    assert lane[:, three_quarters].mean() < path[:, three_quarters].mean()
    assert site[:, three_quarters].mean() < path[:, three_quarters].mean()
    assert set(fitted.metadata_stats()[CAMERA_VIEWS]) == {"path", "lane"}
    # one camera's footage, or none named: the site's view is the camera's; so is it for a camera filmed
    # for too short a time to learn its own
    assert fit_detector(videos, config, cameras={n: "path" for n in videos}).views == {}
    short = {**videos, "gate-0": videos["path-0"][: MIN_VIEW_FRAMES - 1]}
    assert set(fit_detector(short, config, cameras={**cameras, "gate-0": "gate"}).views) == {"path", "lane"}
    assert fit_detector(videos, config).metadata_stats()[CAMERA_VIEWS] == {}


@pytest.mark.parametrize("suffix", [".pt", ".onnx"])
def test_frames_are_scored_as_their_camera_with_its_own_view(tmp_path: Path, suffix: str) -> None:
    videos, cameras = two_camera_footage()
    config = DetectorConfig(height=HEIGHT, width=WIDTH, streams=STREAMS)
    finer = replace(config.flow, finest_scale=0, patch_stride=5, refinement_iterations=0)  # a larger camera's
    trained = train_detector(videos, config, {}, cameras=cameras, flows={"lane": finer})
    path = tmp_path / f"model{suffix}"
    save_detector(trained.detector.model, trained.metadata, path)
    detector = load_detector(path, "cpu")
    assert set(detector.info.camera_views) == {"path", "lane"}
    walker = walker_video(20, WIDTH * 0.75, np.random.default_rng(5))  # on the lane camera's path
    clips = padded_clips(walker, np.arange(len(walker)), config.history)
    site = detector.stream_maps(clips)
    served = detector.served_maps(clips, ["lane"] * len(clips))
    view = detector.info.camera_views["lane"]
    assert view.flow == finer and detector.info.camera_views["path"].flow is None  # the site's
    speed = clip_speeds(clips, finer)
    assert np.allclose(served[:, 0], view.motion_map(speed), atol=1e-5)
    assert np.allclose(served[:, 1], view.place_map(speed), atol=1e-4)
    assert np.allclose(
        detector.served_maps(clips, ["gate"] * len(clips)), site, atol=1e-5
    )  # no view: the site's
    # scored with the camera's patches and statistics, and its calibration is the camera's scorer's prior
    lane = detector.info.for_camera("lane")
    expected = combined_scores(stream_patch_scores(served, lane.stream_patches), lane.stream_stats)
    assert np.allclose(raw_scores(detector, served, ["lane"] * len(clips)), expected)
    assert lane.stream_stats != detector.info.stream_stats
    # moved to the site's statistics, the camera's patch scores sum and gate to the same raw score
    patch = camera_patch_scores(detector, served, ["lane"] * len(clips))
    in_site = combined_scores(
        in_site_units(detector, patch, ["lane"] * len(clips)), detector.info.stream_stats
    )
    assert np.allclose(in_site, expected, atol=1e-4)
    assert CameraStream(lane).scorer.calibration == view.calibration
    assert (
        detector.info.for_camera("gate") is detector.info and detector.info.for_camera(None) is detector.info
    )
    # a walker on the lane: the path camera's map finds it where nobody walks, the lane camera's does not
    as_path = raw_scores(detector, detector.served_maps(clips, ["path"] * len(clips)), ["path"] * len(clips))
    assert np.median(as_path) > np.median(raw_scores(detector, served, ["lane"] * len(clips)))
