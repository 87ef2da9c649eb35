"""`vigil eval --mode online` streams each video as its camera: scored in the camera's own view, and the
cycles' windows name each frame's camera, as the workers score and retrain a site's cameras."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.detector.fitting import MIN_VIEW_FRAMES, train_detector
from models.detector.motion import MotionBaseline
from models.evaluation.online import check_cameras, stream_online
from models.evaluation.videos import score_video
from models.selftrain.config import OnlineConfig, SelfTrainConfig, Window
from models.selftrain.trainer import SelfTrainer
from tests.models.conftest import HEIGHT, TINY_DETECTOR, WIDTH, synthetic_video


def test_each_camera_is_streamed_in_its_own_view_and_named_in_the_cycles_windows(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    footage = {
        f"{camera}-{i}": synthetic_video(MIN_VIEW_FRAMES // 2, rng) for camera in "ab" for i in range(2)
    }
    model = train_detector(footage, TINY_DETECTOR, {}, cameras={name: name[0] for name in footage}).detector
    assert set(model.info.camera_views) == {"a", "b"}
    videos = {"first": synthetic_video(50, rng), "second": synthetic_video(50, rng)}
    cameras = {"first": "a", "second": "b"}
    config = OnlineConfig(
        selftrain=SelfTrainConfig(steps=2, batch_size=8),
        window_frames=80,
        cycle_frames=70,
        view_check_frames=0,
        detector=TINY_DETECTOR,
    )
    trainer = SelfTrainer(config, tmp_path, model=model.model, metadata=model.info.metadata)
    windows: list[Window] = []
    cycle = trainer.cycle

    def recorded(window: Window) -> object:
        windows.append(window)
        return cycle(window)

    trainer.cycle = recorded  # type: ignore[method-assign]
    cycles: list[dict] = []
    streamed = stream_online(
        videos, trainer, MotionBaseline(HEIGHT, WIDTH), cycles, batch_size=10, fps=10, cameras=cameras
    )
    # before the first cycle (70 frames in), the first video is scored as camera a's, not the site's
    as_a = score_video(model, videos["first"], 10, fps=10, camera="a")
    as_site = score_video(model, videos["first"], 10, fps=10)
    np.testing.assert_allclose(streamed["first"].raw, as_a.raw, atol=1e-3)
    assert not np.allclose(as_a.raw, as_site.raw)
    assert len(windows) == 1 and len(cycles) == 1
    window = windows[0]
    assert window.camera_names == ("a", "b")
    assert window.camera_of(np.array([0, len(window) - 1])) == ["a", "b"]  # 50 of a's frames, then 20 of b's
    assert int((window.cameras == 0).sum()) == 50


def test_a_stream_names_every_videos_camera_or_none() -> None:
    check_cameras(["first", "second"], {})
    check_cameras(["first", "second"], {"first": "a", "second": "b"})
    with pytest.raises(ValueError, match=r"not 1 others .*'second'"):
        check_cameras(["first", "second"], {"first": "a"})
