from __future__ import annotations

import logging
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from models.detector.export import convert_onnx_fp16, model_metadata, save_detector
from models.detector.runtime import (
    CPU_PROVIDER,
    CUDA_PROVIDER,
    TENSORRT_PROVIDER,
    InvalidModelError,
    OnnxDetector,
    TorchDetector,
    _start_session,
    choose_providers,
    load_detector,
    tensorrt_options,
)
from models.detector.scores import ScoreCalibration, anomaly_maps, raw_scores
from models.detector.streams import DetectorConfig, DetectorNet
from models.evaluation.videos import score_video
from models.scoring.camera import CameraScorer, CameraStream
from tests.models.conftest import HEIGHT, TINY_DETECTOR, TINY_PREDICTING, WIDTH, synthetic_video


def tiny_detector(seed: int = 0, config: DetectorConfig = TINY_PREDICTING) -> TorchDetector:
    """Every stream with random (not fitted) values, which is all that loading and running need."""
    torch.manual_seed(seed)
    model = DetectorNet(config)
    with torch.no_grad():
        model.appearance.set_bank(torch.randn(config.bank_size, model.appearance.backbone.out_channels))
        if model.motion is not None:
            model.motion.normal_speed.uniform_(0.0, 0.5)
        if model.prediction is not None:  # a head that outputs something: an untrained one predicts no change
            model.prediction.head[0].weight.normal_(0.0, 0.05)
    stats = {name: {"median": 0.5, "scale": 0.1} for name in config.streams}
    metadata = model_metadata(
        config,
        {
            "version": "test-1",
            "patch": 8,
            "stream_stats": stats,
            "calibration": {"median": 0.0, "scale": 2.0},
        },
    )
    return TorchDetector(model, metadata)


@pytest.fixture
def clips() -> np.ndarray:
    """A moving scene: every frame the one before, shifted (so that the flow is not zero)."""
    base = np.random.default_rng(1).integers(0, 256, (3, HEIGHT, WIDTH + 8), np.uint8)
    return np.stack([np.stack([b[:, 4 - t : 4 - t + WIDTH] for t in range(3)]) for b in base])


def test_shapes_and_range(clips: np.ndarray) -> None:
    detector = tiny_detector()
    maps = detector.stream_maps(clips)
    assert maps.shape == (3, 3, HEIGHT, WIDTH) and maps.dtype == np.float32
    assert (maps >= 0).all() and maps[:, 0].max() > 0  # the motion stream sees the shift
    assert raw_scores(detector, maps).shape == (3,)
    assert anomaly_maps(detector, maps).shape == (3, HEIGHT, WIDTH)


def test_score_of_a_frame_ignores_later_frames() -> None:
    detector = tiny_detector()
    video = synthetic_video(30, np.random.default_rng(2))
    changed = video.copy()
    changed[20:] = 255 - changed[20:]
    before, after = (
        score_video(detector, video, batch_size=8, fps=10),
        score_video(detector, changed, batch_size=8, fps=10),
    )
    np.testing.assert_allclose(before.scores[:20], after.scores[:20], atol=1e-6)  # DIS's last bit varies
    assert not np.allclose(before.scores[20:], after.scores[20:])


def test_a_calibration_s_level_stays_as_the_camera_s_own_statistics_take_over() -> None:
    rng = np.random.default_rng(0)
    raw = rng.normal(5.0, 2.0, 3000)  # the camera's own footage: its level is the calibration's
    calibration = ScoreCalibration(5.0, 2.0)
    plain, raised = CameraScorer(calibration), CameraScorer(replace(calibration, level=3.0))
    gaps = [raised.normalize(float(r)) - plain.normalize(float(r)) for r in raw]
    assert np.allclose(gaps, 3.0, atol=0.05)
    # a median moved by 3 spreads instead is pulled back as the camera's statistics take over
    moved = CameraScorer(ScoreCalibration(5.0 - 3 * 2.0, 2.0))
    plain = CameraScorer(calibration)
    drift = [moved.normalize(float(r)) - plain.normalize(float(r)) for r in raw]
    assert drift[0] == pytest.approx(3.0) and drift[-1] < 1.5


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
    recorded = {".onnx": {"precision": "fp32"}, ".pt": {}}[suffix]  # ONNX graphs record their precision
    assert loaded.info.metadata == {**detector.info.metadata, **recorded}
    assert (loaded.info.kind, loaded.info.version) == (detector.info.kind, detector.info.version)
    np.testing.assert_allclose(loaded.stream_maps(clips), detector.stream_maps(clips), atol=1e-3)
    np.testing.assert_allclose(
        raw_scores(loaded, loaded.stream_maps(clips)),
        raw_scores(detector, detector.stream_maps(clips)),
        atol=1e-3,
    )
    for batch in (1, 5):  # dynamic batch axis
        assert loaded.stream_maps(np.repeat(clips[:1], batch, axis=0)).shape == (batch, 3, HEIGHT, WIDTH)


def test_a_detector_without_the_motion_stream_exports_without_the_speed_input(
    tmp_path: Path, clips: np.ndarray
) -> None:
    detector = tiny_detector(config=replace(TINY_DETECTOR, streams=("appearance",)))
    save_detector(detector.model, detector.info.metadata, tmp_path / "appearance.onnx")
    loaded = load_detector(tmp_path / "appearance.onnx", device="cpu", threads=1)
    assert isinstance(loaded, OnnxDetector) and loaded.input_names == {"clips"}
    np.testing.assert_allclose(loaded.stream_maps(clips), detector.stream_maps(clips), atol=1e-3)


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
        "detector": {**detector.info.metadata["detector"], "bank_size": 8},
    }
    save_detector(detector.model, wrong_shape, tmp_path / "shape.pt")
    with pytest.raises(InvalidModelError, match="do not fit"):
        load_detector(tmp_path / "shape.pt")

    with torch.no_grad():
        detector.model.appearance.memory.fill_(float("nan"))
    for suffix in (".pt", ".onnx"):
        save_detector(detector.model, detector.info.metadata, tmp_path / f"nan{suffix}")
        with pytest.raises(InvalidModelError, match="NaN"):
            load_detector(tmp_path / f"nan{suffix}")


def onnx_detector(path: Path, bind_device: str | None = None, max_batch: int | None = None) -> OnnxDetector:
    session = ort.InferenceSession(str(path), providers=[CPU_PROVIDER])
    metadata = load_detector(path, device="cpu", threads=1).info.metadata
    return OnnxDetector(session, metadata, bind_device=bind_device, max_batch=max_batch)


def test_fp16_graph_keeps_uint8_in_float32_out(tmp_path: Path, clips: np.ndarray) -> None:
    detector = tiny_detector()
    fp32, exported, converted = (
        tmp_path / "fp32.onnx",
        tmp_path / "exported.onnx",
        tmp_path / "converted.onnx",
    )
    save_detector(detector.model, detector.info.metadata, fp32)
    save_detector(detector.model, detector.info.metadata, exported, precision="fp16")
    convert_onnx_fp16(fp32, converted)
    reference = load_detector(fp32, device="cpu", threads=1).stream_maps(clips)
    for path in (exported, converted):
        graph = onnx.load(str(path))
        types = {entry.name: entry.type.tensor_type.elem_type for entry in graph.graph.input}
        assert types == {"clips": onnx.TensorProto.UINT8, "speed": onnx.TensorProto.FLOAT}
        assert graph.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        weights = {init.name: init.data_type for init in graph.graph.initializer}
        assert weights["prediction.head.0.weight"] == onnx.TensorProto.FLOAT16  # the compute really is fp16
        loaded = load_detector(path, device="cpu", threads=1)
        assert loaded.info.metadata == {**detector.info.metadata, "precision": "fp16"}
        maps = loaded.stream_maps(clips)
        assert maps.dtype == np.float32 and maps.shape == reference.shape
        np.testing.assert_allclose(maps, reference, atol=2e-2, rtol=1e-2)
    convert_onnx_fp16(fp32, fp32)  # in place
    assert load_detector(fp32, device="cpu").info.metadata["precision"] == "fp16"


def test_precision_errors(tmp_path: Path) -> None:
    detector = tiny_detector()
    with pytest.raises(InvalidModelError, match="ONNX option"):
        save_detector(detector.model, detector.info.metadata, tmp_path / "model.pt", precision="fp16")
    with pytest.raises(ValueError, match="precision must be"):
        save_detector(detector.model, detector.info.metadata, tmp_path / "model.onnx", precision="int8")
    save_detector(detector.model, detector.info.metadata, tmp_path / "half.onnx", precision="fp16")
    with pytest.raises(InvalidModelError, match="already fp16"):
        convert_onnx_fp16(tmp_path / "half.onnx", tmp_path / "again.onnx")
    (tmp_path / "garbage.onnx").write_bytes(b"not a model")
    with pytest.raises(InvalidModelError, match="not a loadable ONNX model"):
        convert_onnx_fp16(tmp_path / "garbage.onnx", tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


TRT_OPTIONS = {"trt_fp16_enable": "True"}
CPU_ONLY = ["AzureExecutionProvider", CPU_PROVIDER]
GPU_BUILD = [TENSORRT_PROVIDER, CUDA_PROVIDER, CPU_PROVIDER]


@pytest.mark.parametrize(
    ("device", "available", "providers", "degraded"),
    [
        ("cpu", GPU_BUILD, [CPU_PROVIDER], False),
        ("auto", CPU_ONLY, [CPU_PROVIDER], False),
        ("cuda", CPU_ONLY, [CPU_PROVIDER], True),
        ("tensorrt", CPU_ONLY, [CPU_PROVIDER], True),
        ("auto", GPU_BUILD, [CUDA_PROVIDER, CPU_PROVIDER], False),  # TensorRT only when asked for
        ("cuda", GPU_BUILD, [CUDA_PROVIDER, CPU_PROVIDER], False),
        ("tensorrt", [CUDA_PROVIDER, CPU_PROVIDER], [CUDA_PROVIDER, CPU_PROVIDER], True),
        ("tensorrt", GPU_BUILD, [(TENSORRT_PROVIDER, TRT_OPTIONS), CUDA_PROVIDER, CPU_PROVIDER], False),
    ],
)
def test_provider_choice(device: str, available: list[str], providers: list[object], degraded: bool) -> None:
    choice = choose_providers(device, available, TRT_OPTIONS)
    assert (choice.providers, choice.degraded) == (providers, degraded)
    assert choice.reason.startswith(f"device={device}")


def test_provider_choice_refuses_unknown_device() -> None:
    with pytest.raises(ValueError, match="device must be one of"):
        choose_providers("gpu", GPU_BUILD, TRT_OPTIONS)
    with pytest.raises(ValueError, match="device must be one of"):
        load_detector(Path("model.onnx"), device="gpu")


def test_tensorrt_options(tmp_path: Path) -> None:
    shapes = {"clips": (3, 240, 360), "speed": (240, 360)}
    options = tensorrt_options(shapes, 32, fp16=False, engine_cache=None)
    assert options == {
        "trt_fp16_enable": "False",
        "trt_profile_min_shapes": "clips:1x3x240x360,speed:1x240x360",
        "trt_profile_opt_shapes": "clips:32x3x240x360,speed:32x240x360",
        "trt_profile_max_shapes": "clips:32x3x240x360,speed:32x240x360",
    }
    cached = tensorrt_options(shapes, 32, fp16=True, engine_cache=tmp_path)
    assert cached["trt_fp16_enable"] == "True"
    assert cached["trt_engine_cache_enable"] == "True" and cached["trt_engine_cache_path"] == str(tmp_path)


def test_io_binding_and_split_batches_score_like_a_plain_run(tmp_path: Path, clips: np.ndarray) -> None:
    detector = tiny_detector()
    path = tmp_path / "model.onnx"
    save_detector(detector.model, detector.info.metadata, path)
    plain = onnx_detector(path).stream_maps(clips)
    # the same up to the last bit of DIS's flow (not bit-reproducible) and of the matrix kernels picked
    # for another batch size
    # the GPU path's binding code, run with host memory as the device
    np.testing.assert_allclose(onnx_detector(path, bind_device="cpu").stream_maps(clips), plain, atol=1e-5)
    np.testing.assert_allclose(
        onnx_detector(path, bind_device="cpu", max_batch=2).stream_maps(clips), plain, atol=1e-5
    )
    np.testing.assert_allclose(onnx_detector(path, max_batch=1).stream_maps(clips), plain, atol=1e-5)


def test_fallbacks_are_logged_with_their_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    detector = tiny_detector()
    path = tmp_path / "model.onnx"
    save_detector(detector.model, detector.info.metadata, path)
    caplog.set_level(logging.INFO, logger="models.detector.runtime")

    if CUDA_PROVIDER not in ort.get_available_providers():  # a CPU build: cuda falls back, auto just says so
        load_detector(path, device="cuda")
        assert any(r.levelno == logging.WARNING and "no CUDA provider" in r.message for r in caplog.records)
        caplog.clear()
        load_detector(path, device="auto")
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert any("no CUDA provider" in r.message for r in caplog.records)
        caplog.clear()

    # a provider that fails to start: the next one is tried, and the failure logged
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # ORT's own "not in available provider names"
        session, asked = _start_session(path, ort.SessionOptions(), ["NoSuchExecutionProvider", CPU_PROVIDER])
    assert (session.get_providers()[0], asked) == (CPU_PROVIDER, CPU_PROVIDER)
    assert any("NoSuchExecutionProvider failed to start" in r.message for r in caplog.records)
    caplog.clear()

    # onnxruntime-gpu without usable CUDA libraries or GPU lists the CUDA provider but cannot create it
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA_PROVIDER, CPU_PROVIDER])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        loaded = load_detector(path, device="cuda")
    assert isinstance(loaded, OnnxDetector) and loaded.bind_device is None
    assert any("could not be created" in r.message for r in caplog.records)
