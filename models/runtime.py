"""Loading, saving and exporting detectors; the runtime is chosen by the weights file.

    .onnx -> ONNX Runtime (CUDA when available and allowed, else CPU)
    .pt   -> PyTorch

Both files carry the same metadata (ONNX: metadata_props["vigil"], JSON; .pt: a dict): kind, version,
input size, history, patch size, score calibration, network and training settings, training data hash,
metrics. Anything that is not a valid detector raises InvalidModelError with a readable message.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.detector import Detector, DetectorInfo

if TYPE_CHECKING:  # torch is imported only where .pt weights, saving or export need it
    from models.network import FramePredictor, NetworkConfig

log = logging.getLogger(__name__)

MODEL_KIND = "unet-predictor"
FORMAT = "vigil-detector/1"
METADATA_KEY = "vigil"
SUFFIXES = (".onnx", ".pt")


class InvalidModelError(ValueError):
    """The weights file is missing, not a detector, inconsistent with its metadata, or produces NaNs."""


def _info(metadata: dict[str, Any]) -> DetectorInfo:
    try:
        return DetectorInfo(
            kind=str(metadata["kind"]),
            version=str(metadata["version"]),
            height=int(metadata["height"]),
            width=int(metadata["width"]),
            history=int(metadata["history"]),
            metadata=metadata,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidModelError(f"model metadata incomplete: {type(exc).__name__}: {exc}") from exc


class TorchDetector(Detector):
    def __init__(self, model: FramePredictor, metadata: dict[str, Any]) -> None:
        self.model = model.eval()
        self.info = _info(metadata)

    def error_maps(self, clips: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.model(torch.from_numpy(np.ascontiguousarray(clips))).numpy()


class OnnxDetector(Detector):
    def __init__(self, session: Any, metadata: dict[str, Any]) -> None:
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.info = _info(metadata)

    def error_maps(self, clips: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(clips, dtype=np.uint8)})[0]


def model_metadata(
    network: NetworkConfig, calibration: dict[str, float] | None, patch: int, extra: dict[str, Any]
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "kind": MODEL_KIND,
        "height": network.height,
        "width": network.width,
        "history": network.history,
        "patch": patch,
        "calibration": calibration,
        "network": network.to_dict(),
        **extra,
    }


def save_detector(model: FramePredictor, metadata: dict[str, Any], path: Path) -> None:
    """Writes .pt (PyTorch state dict + metadata) or .onnx (graph with dynamic batch + metadata)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".pt":
        torch.save({"format": FORMAT, "metadata": metadata, "state_dict": model.state_dict()}, path)
    elif path.suffix == ".onnx":
        export_onnx(model, metadata, path)
    else:
        raise InvalidModelError(f"{path}: model files end in {' or '.join(SUFFIXES)}")


def export_onnx(model: FramePredictor, metadata: dict[str, Any], path: Path) -> None:
    import onnx
    import torch

    config = model.config
    example = torch.zeros((2, config.history + 1, config.height, config.width), dtype=torch.uint8)
    tmp = path.with_suffix(".tmp.onnx")
    with warnings.catch_warnings():
        # the TorchScript exporter is deprecated but exports this plain graph faster and without extra deps
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model.eval(),
            (example,),
            str(tmp),
            input_names=["clips"],
            output_names=["error_maps"],
            dynamic_axes={"clips": {0: "batch"}, "error_maps": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    graph = onnx.load(str(tmp))
    entry = graph.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
    onnx.save(graph, str(path))
    tmp.unlink()


def _onnx_providers(device: str) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device == "cpu":
        log.info("ONNX Runtime: CPUExecutionProvider (device=cpu requested)")
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in available:
        log.info("ONNX Runtime: CUDAExecutionProvider (device=%s)", device)
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    level = logging.WARNING if device == "cuda" else logging.INFO
    log.log(
        level, "ONNX Runtime: CPUExecutionProvider (CUDA provider not available; available: %s)", available
    )
    return ["CPUExecutionProvider"]


def _load_onnx(path: Path, device: str, threads: int) -> OnnxDetector:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads > 0:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(str(path), options, providers=_onnx_providers(device))
    except Exception as exc:  # ORT raises its own exception types for every kind of broken file
        raise InvalidModelError(f"{path}: not a loadable ONNX model ({exc})") from exc
    props = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in props:
        raise InvalidModelError(f"{path}: ONNX model without Vigil metadata (not exported by Vigil)")
    try:
        metadata = json.loads(props[METADATA_KEY])
    except json.JSONDecodeError as exc:
        raise InvalidModelError(f"{path}: unreadable model metadata ({exc})") from exc
    log.info("ONNX Runtime providers in use: %s", session.get_providers())
    return OnnxDetector(session, metadata)


def _load_torch(path: Path, device: str, threads: int) -> TorchDetector:
    import torch

    from models.network import FramePredictor, NetworkConfig

    if threads > 0:
        torch.set_num_threads(threads)
    if device == "cuda":
        log.warning(
            "PyTorch detector runs on CPU (.pt weights are served by the CPU build); export to .onnx for CUDA"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors alike mean "not our file"
        raise InvalidModelError(f"{path}: not a readable PyTorch file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise InvalidModelError(f"{path}: not a Vigil detector file (format {FORMAT} expected)")
    metadata = state["metadata"]
    try:
        model = FramePredictor(NetworkConfig.from_dict(metadata["network"]))
        model.load_state_dict(state["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise InvalidModelError(
            f"{path}: weights do not fit the network ({type(exc).__name__}: {exc})"
        ) from exc
    return TorchDetector(model, metadata)


def _check(detector: Detector, path: Path) -> None:
    """One dry run: right output shape, finite values."""
    info = detector.info
    clips = np.zeros((1, info.history + 1, info.height, info.width), dtype=np.uint8)
    clips[0, -1, : info.height // 2] = 128  # some error so that NaN weights cannot hide behind zeros
    try:
        maps = detector.error_maps(clips)
    except Exception as exc:  # a graph that does not match its metadata fails inside the runtime
        raise InvalidModelError(f"{path}: model does not run on its declared input ({exc})") from exc
    if maps.shape != (1, info.height, info.width):
        raise InvalidModelError(f"{path}: output shape {maps.shape} != {(1, info.height, info.width)}")
    if not np.isfinite(maps).all():
        raise InvalidModelError(f"{path}: model produces NaN or infinite values")
    calibration = info.metadata.get("calibration")
    if calibration and not all(math.isfinite(float(v)) for v in calibration.values()):
        raise InvalidModelError(f"{path}: score calibration is not finite")


def load_detector(path: Path, device: str = "auto", threads: int = 0) -> Detector:
    """The detector stored in `path`; the runtime follows the suffix. Raises InvalidModelError."""
    path = Path(path)
    if not path.is_file():
        raise InvalidModelError(f"{path}: no such model file")
    if path.suffix == ".onnx":
        detector: Detector = _load_onnx(path, device, threads)
    elif path.suffix == ".pt":
        detector = _load_torch(path, device, threads)
    else:
        raise InvalidModelError(f"{path}: unknown model format (expected {' or '.join(SUFFIXES)})")
    _check(detector, path)
    log.info(
        "loaded %s %s (%dx%d, history %d) from %s",
        detector.info.kind,
        detector.info.version,
        detector.info.height,
        detector.info.width,
        detector.info.history,
        path,
    )
    return detector
