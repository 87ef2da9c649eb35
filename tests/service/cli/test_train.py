"""`vigil train --from-camera`: fit to cameras' buffered analysis frames in a real Redis."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from models.detector.runtime import load_detector
from service.cli.commands.train import newest_frames
from service.cli.main import build_parser, command_named
from tests.models.conftest import HEIGHT, WIDTH, synthetic_video
from workers.bus import keys, schemas
from workers.config import get_settings


def vigil(*argv: str) -> int:
    args = build_parser(only=command_named(list(argv))).parse_args(argv)
    return args.handler(args)


def buffer_camera(redis_client: redis.Redis, camera: str, sessions: list[tuple[float, np.ndarray]]) -> None:
    """Camera `camera` with these sessions buffered (their first frame's time, frames at 10 frames/s),
    stored at twice the analysis size: training resizes."""
    redis_client.hset(
        keys.CAMERAS, camera, schemas.CameraConfig(id=camera, source="test://").model_dump_json()
    )
    seq = 0
    for session, (first_ts, video) in enumerate(sessions):
        for index, frame in enumerate(video):
            big = np.repeat(np.repeat(frame, 2, axis=0), 2, axis=1)
            message = schemas.FrameMessage(
                camera=camera,
                seq=seq,
                ts=first_ts + index * 0.1,
                session=session,
                width=2 * WIDTH,
                height=2 * HEIGHT,
                gray=big.tobytes(),
            )
            redis_client.xadd(keys.frames_stream(camera), message.to_fields())
            seq += 1


@pytest.fixture
def gate(redis_url: str, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> Iterator[float]:
    """Camera `gate` with two sessions buffered: 40 frames five minutes ago, then 60 in the last 10 s.
    Yields the time of the newest frame."""
    monkeypatch.setenv("VIGIL_REDIS_URL", redis_url)
    monkeypatch.setenv("VIGIL_ANALYSIS__HEIGHT", str(HEIGHT))
    monkeypatch.setenv("VIGIL_ANALYSIS__WIDTH", str(WIDTH))
    get_settings.cache_clear()
    rng, now = np.random.default_rng(1), time.time()
    buffer_camera(
        redis_client, "gate", [(now - 300.0, synthetic_video(40, rng)), (now - 6.0, synthetic_video(60, rng))]
    )
    yield now
    get_settings.cache_clear()


def test_fits_to_every_buffered_frame_or_the_newest_minutes(gate: float, tmp_path: Path) -> None:
    model = tmp_path / "site.onnx"
    assert vigil("train", "--from-camera", "gate", "--out", str(model), "--threads", "1") == 0
    training = load_detector(model, "cpu").info.metadata["training"]
    assert (training["dataset"], training["videos"], training["frames"]) == ("camera:gate", 2, 100)
    recent = tmp_path / "recent.pt"
    assert vigil("train", "--from-camera", "gate", "--minutes", "1", "--out", str(recent)) == 0
    training = load_detector(recent, "cpu").info.metadata["training"]
    assert (training["videos"], training["frames"]) == (1, 60)  # the session of five minutes ago is left out


def test_fits_to_several_cameras_together(
    gate: float, redis_client: redis.Redis, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A site whose cameras see different scenes: one model fitted to all their footage, each camera's
    runs its videos; a camera with too little footage is named, as an unknown one is."""
    rng = np.random.default_rng(2)
    buffer_camera(redis_client, "lobby", [(gate - 20.0, synthetic_video(70, rng)[:, ::-1])])
    model = tmp_path / "site.onnx"
    argv = ("train", "--from-camera", "gate,lobby", "--from-camera", "gate", "--out", str(model))
    assert vigil(*argv, "--threads", "1") == 0
    training = load_detector(model, "cpu").info.metadata["training"]
    assert (training["dataset"], training["videos"], training["frames"]) == ("camera:gate,lobby", 3, 170)
    every = tmp_path / "every.pt"  # every enabled camera of the site, each its newest 50 frames
    assert vigil("train", "--all-cameras", "--footage-frames", "100", "--out", str(every)) == 0
    training = load_detector(every, "cpu").info.metadata["training"]
    assert (training["dataset"], training["videos"], training["frames"]) == ("camera:gate,lobby", 2, 100)
    out = str(tmp_path / "m.onnx")
    assert vigil("train", "--from-camera", "gate,lobby", "--minutes", "0.2", "--out", out) == 2
    # gate's last session lies in the last 12 s, lobby's does not
    assert "camera 'lobby' has 0 analysis frames in the last 0.2 minutes" in capsys.readouterr().err
    assert vigil("train", "--from-camera", "gate,door", "--out", out) == 2
    assert "no camera 'door'" in capsys.readouterr().err
    assert vigil("train", "--from-camera", "gate,,lobby", "--out", out) == 2
    assert "an empty camera id" in capsys.readouterr().err
    assert not Path(out).exists()


def test_clear_errors(gate: float, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "m.onnx")
    assert vigil("train", "--from-camera", "door", "--out", out) == 2
    assert "no camera 'door'" in capsys.readouterr().err
    assert vigil("train", "--from-camera", "gate", "--minutes", "0.05", "--out", out) == 2
    assert re.search(r"has \d\d analysis frames in the last 0.05 minutes", capsys.readouterr().err)
    assert vigil("train", "--out", out) == 2
    assert "give one of DATASET_DIR, --from-camera ID or --all-cameras" in capsys.readouterr().err
    assert vigil("train", "--from-camera", "gate", "--all-cameras", "--out", out) == 2
    assert "give one of" in capsys.readouterr().err
    assert not Path(out).exists()


def test_a_camera_s_newest_frames_are_kept_whole_runs_last() -> None:
    runs = [np.full(3, 1), np.full(4, 2), np.arange(5)]
    kept = newest_frames(runs, 7)
    assert [run.tolist() for run in kept] == [[2, 2], [0, 1, 2, 3, 4]]
    assert [len(run) for run in newest_frames(runs, 6)] == [5]  # a single frame has no motion to learn
    assert [len(run) for run in newest_frames(runs, 100)] == [3, 4, 5]
