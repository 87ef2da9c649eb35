"""The place stream: where normal footage moves, on small arrays; a gated stream's part in the frame
score; a fitted detector that sees a walker where nobody walked."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.detector.base import PLACE_SILENCED_CAMERAS, DetectorInfo
from models.detector.fitting import fit_detector
from models.detector.flow import clip_speeds
from models.detector.place import (
    PlaceStream,
    moving_counts,
    place_blur,
    rarity,
    typical_speed,
)
from models.detector.scores import (
    ScoreCalibration,
    combined_anomaly_maps,
    combined_scores,
    stream_patch_scores,
)
from models.detector.streams import DetectorConfig, DetectorNet
from models.scoring.camera import padded_clips
from tests.models.conftest import HEIGHT, WIDTH, walker_video


def test_the_typical_speed_is_that_of_what_moves_in_row_units() -> None:
    # two rows, the second seen twice as large: its speeds count half
    row_sum = np.array([3.0, 4.0])  # row 0: speeds 1 and 2; row 1: 4 (2 in row units)
    row_squares = np.array([5.0, 16.0])
    typical = typical_speed(row_sum, row_squares, np.array([1.0, 2.0]))
    assert typical == pytest.approx((1 + 4 + 4) / (1 + 2 + 2))
    assert typical_speed(np.zeros(2), np.zeros(2), np.ones(2)) == 1.0


def test_a_pixel_moves_over_a_fraction_of_the_typical_speed_on_its_row() -> None:
    speed = np.zeros((3, 2, 2), dtype=np.float32)
    speed[:, 0, 0] = 0.3  # row scale 1: over 0.2 of the typical speed 1
    speed[:2, 1, 1] = 0.3  # row scale 2: under 0.4
    speed[:2, 1, 0] = 0.5
    counts = moving_counts(speed, np.array([1.0, 2.0]), typical=1.0)
    np.testing.assert_array_equal(counts, [[3, 0], [2, 0]])


def test_a_place_never_seen_moving_is_rarer_than_a_path() -> None:
    counts = np.zeros((5, 5))
    counts[:, :2] = 100.0
    rare = rarity(counts, frames=100, blur=1)
    assert rare[0, 0] == pytest.approx(-np.log10(101 / 102))
    assert rare[0, 4] == pytest.approx(np.log10(102))
    spread = rarity(counts, frames=100, blur=3)
    assert rare[0, 0] < spread[0, 2] < rare[0, 4]  # the path's edge shares its place
    assert place_blur(240) == 11 and place_blur(16) == 1


def test_the_stream_is_the_rarity_where_things_move_at_typical_speed() -> None:
    stream = PlaceStream(2, 2)
    stream.fit(np.array([[1.0, 3.0], [3.0, 3.0]]), typical=2.0)
    speed = torch.tensor([[[4.0, 4.0], [1.0, 0.0]]])
    np.testing.assert_allclose(stream(speed).numpy(), [[[1.0, 3.0], [1.5, 0.0]]])


def test_a_gated_stream_counts_only_above_its_gate() -> None:
    stats = [ScoreCalibration(1.0, 1.0), ScoreCalibration(0.0, 2.0, gate=3.0)]
    patch = np.array([[2.0, 4.0], [2.0, 10.0]], dtype=np.float32)  # the gated z: 2 (silent), then 5
    np.testing.assert_allclose(combined_scores(patch, stats), [1.0, 3.0])
    maps = np.zeros((1, 2, 1, 2), dtype=np.float32)
    maps[0, 1, 0] = [4.0, 10.0]
    np.testing.assert_allclose(combined_anomaly_maps(maps, stats), [[[0.0, 2.0]]])
    assert ScoreCalibration.from_dict(stats[1].to_dict()) == stats[1]
    assert (
        "gate" not in stats[0].to_dict()
        and ScoreCalibration.from_dict({"median": 0, "scale": 1}).gate is None
    )


def test_a_fitted_detector_sees_a_walker_where_nobody_walked() -> None:
    rng = np.random.default_rng(0)
    config = DetectorConfig(height=HEIGHT, width=WIDTH, streams=("motion", "place"))
    path = {f"{i}": walker_video(40, WIDTH * 0.25 + 2 * i, rng) for i in range(4)}
    fitted = fit_detector(path, config)
    model: DetectorNet = fitted.model
    stats = fitted.stream_stats["place"]
    assert stats.gate is not None

    def place_z(video: np.ndarray) -> np.ndarray:
        clips = padded_clips(video, np.arange(len(video)), config.history)
        with torch.inference_mode():
            maps = model(torch.from_numpy(clips), torch.from_numpy(clip_speeds(clips, config.flow))).numpy()
        return stats.z(stream_patch_scores(maps, 8)[:, config.streams.index("place")])

    on_the_path = place_z(walker_video(40, WIDTH * 0.25 + 3, rng))
    on_the_lawn = place_z(walker_video(40, WIDTH * 0.8, rng))
    assert np.median(on_the_path) < stats.gate < np.median(on_the_lawn)


def test_the_place_evidence_of_the_cameras_the_map_no_longer_knows_is_taken_out() -> None:
    info = DetectorInfo(
        "motion-place", "v", 2, 3, 1, {"streams": ["motion", "place"], PLACE_SILENCED_CAMERAS: ["lobby"]}
    )
    maps = np.ones((3, 2, 2, 3), dtype=np.float32)
    out = info.silence_place(maps, ["gate", "lobby", None])
    assert out[:, 0].all() and out[[0, 2], 1].all() and not out[1, 1].any()
    # a model without a place stream, or a map silenced for no camera, scores every camera alike
    plain = DetectorInfo("motion", "v", 2, 3, 1, {PLACE_SILENCED_CAMERAS: ["lobby"]})
    assert plain.silence_place(np.ones((1, 1, 2, 3)), ["lobby"]).all()
    assert (
        DetectorInfo("motion-place", "v", 2, 3, 1, {"streams": ["motion", "place"]}).place_silenced_cameras
        == set()
    )
