from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.evaluation import score_video
from models.network import FramePredictor
from models.runtime import InvalidModelError, TorchDetector, load_detector, model_metadata, save_detector
from models.stream import CameraStream, raw_scores
from tests.models.conftest import HEIGHT, TINY_NETWORK, WIDTH, synthetic_video


def tiny_detector(seed: int = 0) -> TorchDetector:
    torch.manual_seed(seed)
    model = FramePredictor(TINY_NETWORK)
    with torch.no_grad():  # a head that outputs something: an untrained one predicts "no change"
        model.head[0].weight.normal_(0.0, 0.05)
    metadata = model_metadata(
        TINY_NETWORK, {"median": 0.05, "scale": 0.01}, patch=8, extra={"version": "test-1", "metrics": {}}
    )
    return TorchDetector(model, metadata)


@pytest.fixture
def clips() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (3, TINY_NETWORK.history + 1, HEIGHT, WIDTH), np.uint8)


def test_shapes_and_range(clips: np.ndarray) -> None:
    maps = tiny_detector().error_maps(clips)
    assert maps.shape == (3, HEIGHT, WIDTH) and maps.dtype == np.float32
    assert (maps >= 0).all() and (maps <= 1).all()
    assert raw_scores(tiny_detector(), maps).shape == (3,)


def test_score_of_a_frame_ignores_later_frames() -> None:
    detector = tiny_detector()
    video = synthetic_video(30, np.random.default_rng(2))
    changed = video.copy()
    changed[20:] = 255 - changed[20:]
    before, after = score_video(detector, video, batch_size=8), score_video(detector, changed, batch_size=8)
    np.testing.assert_array_equal(before.scores[:20], after.scores[:20])
    assert not np.allclose(before.scores[20:], after.scores[20:])


def test_stream_pads_history_at_start_and_after_reconnect() -> None:
    stream = CameraStream(tiny_detector().info)
    frames = [np.full((HEIGHT, WIDTH), v, np.uint8) for v in (10, 20, 30)]
    assert [c[0, 0] for c in stream.push(frames[0])] == [10, 10, 10]
    assert [c[0, 0] for c in stream.push(frames[1])] == [10, 10, 20]
    assert [c[0, 0] for c in stream.push(frames[2], session=1)] == [30, 30, 30]


@pytest.mark.parametrize("suffix", [".pt", ".onnx"])
def test_saved_model_scores_like_the_trained_one(tmp_path: Path, clips: np.ndarray, suffix: str) -> None:
    detector = tiny_detector()
    path = tmp_path / f"model{suffix}"
    save_detector(detector.model, detector.info.metadata, path)
    loaded = load_detector(path, device="cpu", threads=1)
    assert loaded.info == detector.info
    np.testing.assert_allclose(loaded.error_maps(clips), detector.error_maps(clips), atol=1e-3)
    for batch in (1, 5):  # dynamic batch axis
        assert loaded.error_maps(np.repeat(clips[:1], batch, axis=0)).shape == (batch, HEIGHT, WIDTH)


def test_invalid_weights_are_refused(tmp_path: Path) -> None:
    detector = tiny_detector()
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    with pytest.raises(InvalidModelError, match="not a loadable ONNX model"):
        load_detector(garbage)
    (tmp_path / "garbage.pt").write_bytes(b"not a model")
    with pytest.raises(InvalidModelError, match="not a readable PyTorch file"):
        load_detector(tmp_path / "garbage.pt")
    with pytest.raises(InvalidModelError, match="no such model file"):
        load_detector(tmp_path / "missing.onnx")
    (tmp_path / "model.h5").write_bytes(b"")
    with pytest.raises(InvalidModelError, match="unknown model format"):
        load_detector(tmp_path / "model.h5")

    wrong_shape = {
        **detector.info.metadata,
        "network": {**detector.info.metadata["network"], "widths": [4, 8]},
    }
    save_detector(detector.model, wrong_shape, tmp_path / "shape.pt")
    with pytest.raises(InvalidModelError, match="do not fit"):
        load_detector(tmp_path / "shape.pt")

    with torch.no_grad():
        detector.model.head[0].bias.fill_(float("nan"))
    for suffix in (".pt", ".onnx"):
        save_detector(detector.model, detector.info.metadata, tmp_path / f"nan{suffix}")
        with pytest.raises(InvalidModelError, match="NaN"):
            load_detector(tmp_path / f"nan{suffix}")
