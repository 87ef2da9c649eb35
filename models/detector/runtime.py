"""Loading, saving and exporting detectors; the runtime is chosen by the weights file.

    .onnx -> ONNX Runtime (TensorRT or CUDA when available and allowed, else CPU)
    .pt   -> PyTorch (CPU)

Both run the same pre-processing (the optical flow of models/detector/flow.py, computed on the CPU) before the
network. Both files carry the same metadata (ONNX: metadata_props["vigil"], JSON; .pt: a dict): kind,
version, input size, history, streams and their statistics, patch size, score calibration, detector
and training settings, training data hash, metrics; ONNX graphs also record their precision (fp32, or
fp16 compute with the same inputs and float32 output). Anything that is not a valid detector raises
InvalidModelError with a readable message.
"""

from __future__ import annotations

import json
import logging
import math
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.detector.base import Detector, DetectorInfo
from models.detector.flow import FlowConfig, clip_speeds
from models.detector.scores import ScoreCalibration, camera_groups

if TYPE_CHECKING:  # torch is imported only where .pt weights, saving or export need it
    from models.detector.streams import DetectorNet

log = logging.getLogger(__name__)


FORMAT = "vigil-detector/2"


METADATA_KEY = "vigil"


SUFFIXES = (".onnx", ".pt")


PRECISIONS = ("fp32", "fp16")  # of ONNX graphs; .pt weights are fp32


DEVICES = ("auto", "cpu", "cuda", "tensorrt")


INPUT_NAME = "clips"


SPEED_INPUT = "speed"


OUTPUT_NAME = "stream_maps"


DEFAULT_MAX_BATCH = 64  # largest batch a TensorRT engine is built for


CPU_MAX_BATCH = 8  # on the CPU, larger batches run in parts of this size (faster: they stay in cache)


CPU_PROVIDER = "CPUExecutionProvider"


CUDA_PROVIDER = "CUDAExecutionProvider"


TENSORRT_PROVIDER = "TensorrtExecutionProvider"


class InvalidModelError(ValueError):
    """The weights file is missing, not a detector, inconsistent with its metadata, or produces NaNs."""


def model_kind(streams: list[str] | tuple[str, ...]) -> str:
    """What alerts and versions call a learned detector: its streams, e.g. 'motion-appearance'."""
    return "-".join(streams)


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


def _flow_config(metadata: dict[str, Any]) -> FlowConfig:
    try:
        return FlowConfig.from_dict(metadata["detector"]["flow"])
    except (KeyError, TypeError) as exc:
        raise InvalidModelError(f"model metadata has no flow settings ({type(exc).__name__}: {exc})") from exc


class FlowDetector(Detector):
    """A learned detector: its motion streams read the clips' optical-flow speed, measured on the CPU before
    the network; a camera whose own view the model keeps (models/detector/views.py) gets its motion and
    place maps from that view."""

    flow: FlowConfig
    reads_speed: bool = True  # whether the network reads the speed (a graph without motion does not)

    @abstractmethod
    def maps_of(self, clips: np.ndarray, speed: np.ndarray | None) -> np.ndarray:
        """The network's stream maps of uint8 clips and their speed maps (None where it reads none)."""

    def stream_maps(self, clips: np.ndarray) -> np.ndarray:
        clips = np.ascontiguousarray(clips, dtype=np.uint8)
        return self.maps_of(clips, clip_speeds(clips, self.flow) if self.reads_speed else None)

    def served_maps(self, clips: np.ndarray, cameras: Sequence[str | None]) -> np.ndarray:
        views = self.info.camera_views
        viewed = sorted({camera for camera in cameras if camera in views}, key=str)
        if not viewed or not self.reads_speed:
            return super().served_maps(clips, cameras)
        clips = np.ascontiguousarray(clips, dtype=np.uint8)
        groups = camera_groups(cameras, len(clips))
        flows: dict[FlowConfig, list[np.ndarray]] = {}  # each camera's speed measured with its own flow
        for camera, items in groups.items():
            view = views.get(camera) if camera is not None else None
            flows.setdefault(view.flow if view is not None and view.flow else self.flow, []).append(items)
        speed = np.empty((len(clips), *clips.shape[2:]), dtype=np.float32)
        for flow, parts in flows.items():
            items = np.concatenate(parts)
            speed[items] = clip_speeds(clips[items], flow)
        maps = self.maps_of(clips, speed)
        streams = self.info.streams
        for camera in viewed:
            items, view = groups[camera], views[camera]
            if "motion" in streams:
                maps[items, streams.index("motion")] = view.motion_map(speed[items])
            if "place" in streams and view.rarity is not None:
                maps[items, streams.index("place")] = view.place_map(speed[items])
        return self.info.silence_place(maps, cameras)


class TorchDetector(FlowDetector):
    def __init__(self, model: DetectorNet, metadata: dict[str, Any]) -> None:
        self.model = model.eval()
        self.info = _info(metadata)
        self.flow = _flow_config(metadata)

    def maps_of(self, clips: np.ndarray, speed: np.ndarray | None) -> np.ndarray:
        import torch

        assert speed is not None
        with torch.inference_mode():
            return self.model(torch.from_numpy(clips), torch.from_numpy(speed)).numpy()


class OnnxDetector(FlowDetector):
    """An ONNX Runtime session. With `bind_device` (the GPU path), each batch's inputs are bound to the
    session as device tensors and the maps are written straight to host memory (I/O binding). Batches
    larger than `max_batch` are scored in parts (a TensorRT engine's largest profile; on the CPU, parts
    keep the appearance stream's distance matrices in cache)."""

    def __init__(
        self,
        session: Any,
        metadata: dict[str, Any],
        bind_device: str | None = None,
        max_batch: int | None = None,
    ) -> None:
        self.session = session
        self.input_names = {entry.name for entry in session.get_inputs()}
        self.output_name = session.get_outputs()[0].name
        self.bind_device = bind_device
        self.max_batch = max_batch
        self.info = _info(metadata)
        self.flow = _flow_config(metadata)
        # the exporter drops an input the graph does not read: a graph without the motion stream has no
        # speed input, and one with the motion stream alone no clips (its evidence is all in the speed)
        self.reads_speed = SPEED_INPUT in self.input_names

    def maps_of(self, clips: np.ndarray, speed: np.ndarray | None) -> np.ndarray:
        inputs: dict[str, np.ndarray] = {}
        if INPUT_NAME in self.input_names:
            inputs[INPUT_NAME] = clips
        if speed is not None:
            inputs[SPEED_INPUT] = speed
        step = self.max_batch or len(clips)
        parts = range(0, len(clips), step)
        return np.concatenate([self._run({k: v[i : i + step] for k, v in inputs.items()}) for i in parts])

    def _run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        if self.bind_device is None:
            return self.session.run([self.output_name], inputs)[0]
        from onnxruntime import OrtValue

        binding = self.session.io_binding()
        for name, value in inputs.items():
            binding.bind_ortvalue_input(name, OrtValue.ortvalue_from_numpy(value, self.bind_device, 0))
        binding.synchronize_inputs()  # the copies to the device are done before the session's stream reads
        binding.bind_output(self.output_name, "cpu")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]


def read_onnx(path: Path) -> Any:
    import onnx

    try:
        graph = onnx.load(str(path))
    except Exception as exc:  # protobuf decoding errors of every kind mean "not an ONNX file"
        raise InvalidModelError(f"{path}: not a loadable ONNX model ({type(exc).__name__}: {exc})") from exc
    if not graph.graph.node or not graph.graph.input:
        raise InvalidModelError(f"{path}: not a loadable ONNX model (no graph)")
    return graph


def onnx_metadata(graph: Any, path: Path) -> dict[str, Any]:
    props = {entry.key: entry.value for entry in graph.metadata_props}
    if METADATA_KEY not in props:
        raise InvalidModelError(f"{path}: ONNX model without Vigil metadata (not exported by Vigil)")
    try:
        return json.loads(props[METADATA_KEY])
    except json.JSONDecodeError as exc:
        raise InvalidModelError(f"{path}: unreadable model metadata ({exc})") from exc


Provider = str | tuple[str, dict[str, str]]


@dataclass(frozen=True)
class ProviderChoice:
    providers: list[Provider]  # ONNX Runtime's `providers` argument, most preferred first
    reason: str
    degraded: bool  # the device asked for will not be used: worth a warning

    @property
    def names(self) -> list[str]:
        return [_provider_name(provider) for provider in self.providers]


def _provider_name(provider: Provider) -> str:
    return provider if isinstance(provider, str) else provider[0]


def tensorrt_options(
    input_shapes: dict[str, tuple[int, ...]], max_batch: int, fp16: bool, engine_cache: Path | None
) -> dict[str, str]:
    """TensorRT provider options: one engine for every batch of 1..max_batch clips (without a profile,
    TensorRT builds a new engine whenever a larger batch comes), fp16 kernels for fp16 models, and
    built engines kept in `engine_cache` (else each start builds them again, which takes minutes).
    `input_shapes`: each graph input's shape without the batch axis."""

    def profile(batch: int) -> str:
        return ",".join(
            f"{name}:{'x'.join(str(n) for n in (batch, *shape))}" for name, shape in input_shapes.items()
        )

    options = {
        "trt_fp16_enable": str(fp16),
        "trt_profile_min_shapes": profile(1),
        "trt_profile_opt_shapes": profile(max_batch),
        "trt_profile_max_shapes": profile(max_batch),
    }
    if engine_cache is not None:
        options |= {
            "trt_engine_cache_enable": "True",
            "trt_engine_cache_path": str(engine_cache),
            "trt_timing_cache_enable": "True",
            "trt_timing_cache_path": str(engine_cache),
        }
    return options


def choose_providers(device: str, available: list[str], trt_options: dict[str, str]) -> ProviderChoice:
    """The providers for `device` among those this onnxruntime build offers (`available`).

    cpu: CPU. auto: CUDA when the build has it, else CPU. cuda: the same, CPU being a degradation.
    tensorrt: TensorRT with `trt_options`, then CUDA and CPU for what TensorRT does not run.
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {device!r}")
    if device == "cpu":
        return ProviderChoice([CPU_PROVIDER], "device=cpu requested", degraded=False)
    if CUDA_PROVIDER not in available:
        return ProviderChoice(
            [CPU_PROVIDER],
            f"device={device} but this onnxruntime build has no CUDA provider "
            f"(it has {', '.join(available)}; the GPU image installs onnxruntime-gpu)",
            degraded=device != "auto",
        )
    gpu: list[Provider] = [CUDA_PROVIDER, CPU_PROVIDER]
    if device != "tensorrt":
        return ProviderChoice(gpu, f"device={device}, CUDA provider available", degraded=False)
    if TENSORRT_PROVIDER not in available:
        return ProviderChoice(
            gpu, "device=tensorrt but this onnxruntime build has no TensorRT provider", degraded=True
        )
    return ProviderChoice(
        [(TENSORRT_PROVIDER, trt_options), *gpu], "device=tensorrt requested", degraded=False
    )


def _start_session(path: Path, options: Any, providers: list[Provider]) -> tuple[Any, str]:
    """A session on the first provider of `providers` that starts (each failure logged with its reason),
    and the provider it was asked to start on."""
    import onnxruntime as ort

    first = 0
    while True:
        attempt, asked = providers[first:], _provider_name(providers[first])
        try:
            # ORT's own fallback would only print the reason: this one logs it
            return ort.InferenceSession(str(path), options, providers=attempt, enable_fallback=0), asked
        except Exception as exc:  # ORT raises its own exception types for every kind of failure
            if len(attempt) == 1:
                raise InvalidModelError(f"{path}: not a loadable ONNX model ({exc})") from exc
            log.warning(
                "ONNX Runtime: %s failed to start (%s); falling back to %s",
                asked,
                exc,
                _provider_name(attempt[1]),
            )
            first += 1


def _load_onnx(
    path: Path, device: str, threads: int, max_batch: int, engine_cache: Path | None
) -> OnnxDetector:
    import onnxruntime as ort

    graph = read_onnx(path)
    metadata = onnx_metadata(graph, path)
    info = _info(metadata)
    fp16 = metadata.get("precision") == "fp16"
    shapes = {INPUT_NAME: (info.history + 1, info.height, info.width), SPEED_INPUT: (info.height, info.width)}
    input_shapes = {entry.name: shapes.get(entry.name, ()) for entry in graph.graph.input}
    del graph  # the session reads the file itself
    trt_options = tensorrt_options(input_shapes, max_batch, fp16, engine_cache)
    choice = choose_providers(device, ort.get_available_providers(), trt_options)
    log.log(
        logging.WARNING if choice.degraded else logging.INFO,
        "ONNX Runtime: %s (%s)",
        choice.names[0],
        choice.reason,
    )
    if TENSORRT_PROVIDER in choice.names and engine_cache is not None:
        engine_cache.mkdir(parents=True, exist_ok=True)
    options = ort.SessionOptions()
    if threads > 0:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    # ONNX Runtime's threads would otherwise spin after each run, on the cores the optical flow needs next
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session, asked = _start_session(path, options, choice.providers)
    in_use = session.get_providers()
    if in_use[0] != asked:  # ORT leaves out, with an error of its own, a provider it cannot create
        log.warning(
            "ONNX Runtime: %s could not be created (see ONNX Runtime's error above: CUDA, cuDNN or TensorRT "
            "libraries missing, or no GPU visible); running on %s",
            asked,
            in_use[0],
        )
    log.info("ONNX Runtime providers in use: %s", in_use)
    if fp16 and in_use[0] == CPU_PROVIDER:
        log.info("fp16 model on CPU: ONNX Runtime computes it through casts, no faster than the fp32 model")
    on_gpu = in_use[0] in (CUDA_PROVIDER, TENSORRT_PROVIDER)
    return OnnxDetector(
        session,
        metadata,
        bind_device="cuda" if on_gpu else None,
        max_batch=max_batch if in_use[0] == TENSORRT_PROVIDER else None if on_gpu else CPU_MAX_BATCH,
    )


def _load_torch(path: Path, device: str, threads: int) -> TorchDetector:
    import torch

    from models.detector.streams import DetectorConfig, DetectorNet

    if threads > 0:
        torch.set_num_threads(threads)
    if device in ("cuda", "tensorrt"):
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
        model = DetectorNet(DetectorConfig.from_dict(metadata["detector"]))
        model.load_state_dict(state["state_dict"])
        anchors = state.get("anchors")
        if anchors is not None:
            model.anchors = anchors.numpy()
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise InvalidModelError(
            f"{path}: weights do not fit the network ({type(exc).__name__}: {exc})"
        ) from exc
    return TorchDetector(model, metadata)


def _check(detector: Detector, path: Path) -> None:
    """One dry run: right output shape, finite values, finite statistics."""
    info = detector.info
    clips = np.zeros((1, info.history + 1, info.height, info.width), dtype=np.uint8)
    clips[0, -1, : info.height // 2] = 128  # some evidence so that NaN weights cannot hide behind zeros
    try:
        maps = detector.stream_maps(clips)
    except Exception as exc:  # a graph that does not match its metadata fails inside the runtime
        raise InvalidModelError(f"{path}: model does not run on its declared input ({exc})") from exc
    expected = (1, len(info.streams), info.height, info.width)
    if maps.shape != expected:
        raise InvalidModelError(f"{path}: output shape {maps.shape} != {expected}")
    if not np.isfinite(maps).all():
        raise InvalidModelError(f"{path}: model produces NaN or infinite values")
    try:
        stats = info.stream_stats
        calibration = info.metadata.get("calibration")
        if calibration:
            stats.append(ScoreCalibration.from_dict(calibration))
    except (TypeError, ValueError, KeyError) as exc:
        raise InvalidModelError(f"{path}: unreadable score statistics ({exc})") from exc
    if not all(math.isfinite(v) for stat in stats for v in (stat.median, stat.scale, stat.level)):
        raise InvalidModelError(f"{path}: score statistics are not finite")


def load_detector(
    path: Path,
    device: str = "auto",
    threads: int = 0,
    *,
    max_batch: int = DEFAULT_MAX_BATCH,
    engine_cache: Path | None = None,
) -> Detector:
    """The detector stored in `path`; the runtime follows the suffix. Raises InvalidModelError.

    device: auto, cpu, cuda or tensorrt (see choose_providers). max_batch and engine_cache matter only
    with TensorRT: the largest batch its engine is built for, and where built engines are kept.
    """
    path = Path(path)
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {device!r}")
    if not path.is_file():
        raise InvalidModelError(f"{path}: no such model file")
    if path.suffix == ".onnx":
        detector: Detector = _load_onnx(path, device, threads, max_batch, engine_cache)
    elif path.suffix == ".pt":
        detector = _load_torch(path, device, threads)
    else:
        raise InvalidModelError(f"{path}: unknown model format (expected {' or '.join(SUFFIXES)})")
    _check(detector, path)
    log.info(
        "loaded %s %s (%dx%d, history %d, %s) from %s",
        detector.info.kind,
        detector.info.version,
        detector.info.height,
        detector.info.width,
        detector.info.history,
        detector.info.metadata.get("precision", "fp32"),
        path,
    )
    return detector
