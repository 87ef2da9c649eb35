"""Saving and exporting detectors (loading is models/detector/runtime.py): .pt (PyTorch state dict and
metadata) or .onnx (one graph, uint8 clips and float32 speed maps in, float32 stream maps out, fp32 or
fp16 compute), with the metadata every detector file carries.
"""

from __future__ import annotations

import datetime as dt
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.detector.runtime import (
    FORMAT,
    INPUT_NAME,
    METADATA_KEY,
    OUTPUT_NAME,
    PRECISIONS,
    SPEED_INPUT,
    SUFFIXES,
    InvalidModelError,
    model_kind,
    onnx_metadata,
    read_onnx,
)

if TYPE_CHECKING:  # torch is imported only where .pt weights, saving or export need it
    from models.detector.streams import DetectorConfig, DetectorNet


def model_metadata(config: DetectorConfig, extra: dict[str, Any]) -> dict[str, Any]:
    """The metadata every detector file carries; `extra` adds version, statistics, training, metrics."""
    return {
        "format": FORMAT,
        "kind": model_kind(config.streams),
        "height": config.height,
        "width": config.width,
        "history": config.history,
        "streams": list(config.streams),
        "detector": config.to_dict(),
        **extra,
    }


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be {' or '.join(PRECISIONS)}, not {precision!r}")


def save_detector(model: DetectorNet, metadata: dict[str, Any], path: Path, precision: str = "fp32") -> None:
    """Writes .pt (PyTorch state dict + metadata) or .onnx (graph with dynamic batch + metadata)."""
    import torch

    _check_precision(precision)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".pt":
        if precision != "fp32":
            raise InvalidModelError(f"{path}: {precision} is an ONNX option; .pt weights are fp32")
        partial = path.with_name(path.name + ".partial")
        state = {"format": FORMAT, "metadata": metadata, "state_dict": model.state_dict()}
        if model.anchors is not None:
            state["anchors"] = torch.from_numpy(np.ascontiguousarray(model.anchors))
        torch.save(state, partial)
        partial.replace(path)
    elif path.suffix == ".onnx":
        export_onnx(model, metadata, path, precision)
    else:
        raise InvalidModelError(f"{path}: model files end in {' or '.join(SUFFIXES)}")


def export_onnx(model: DetectorNet, metadata: dict[str, Any], path: Path, precision: str = "fp32") -> None:
    """The network as an ONNX graph: uint8 clips and float32 speed maps in, float32 stream maps out,
    whatever the precision."""
    import onnx
    import torch

    _check_precision(precision)
    config = model.config
    clips = torch.zeros((2, config.history + 1, config.height, config.width), dtype=torch.uint8)
    speed = torch.zeros((2, config.height, config.width), dtype=torch.float32)
    tmp = path.with_suffix(".tmp.onnx")
    try:
        with warnings.catch_warnings():
            # the TorchScript exporter is deprecated but exports this plain graph faster, without extra deps
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                model.eval(),
                (clips, speed),
                str(tmp),
                input_names=[INPUT_NAME, SPEED_INPUT],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, SPEED_INPUT: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
        graph = onnx.load(str(tmp))
    finally:
        tmp.unlink(missing_ok=True)
    if precision == "fp16":
        graph = _to_fp16(graph)
    _write_onnx(graph, {**metadata, "precision": precision}, path)


def convert_onnx_fp16(source: Path, target: Path) -> None:
    """Writes an fp16 copy of a Vigil fp32 ONNX model to `target` (which may be `source`)."""
    graph = read_onnx(source)
    metadata = onnx_metadata(graph, source)
    if metadata.get("precision", "fp32") != "fp32":
        raise InvalidModelError(f"{source}: already {metadata['precision']}")
    _write_onnx(_to_fp16(graph), {**metadata, "precision": "fp16"}, target)


def _to_fp16(graph: Any) -> Any:
    """fp16 weights and compute; the inputs and the float32 output stay as they are (cast inside). The
    appearance stream's nearest-cell search stays fp32: |q|^2 - 2 q.b + |b|^2 cancels digits fp16 lacks."""
    # ONNX Runtime's own converter, shipped with both onnxruntime and onnxruntime-gpu: no extra dependency
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    return convert_float_to_float16(
        graph, keep_io_types=True, op_block_list=[*DEFAULT_OP_BLOCK_LIST, "MatMul", "ReduceMin", "Sqrt"]
    )


def _write_onnx(graph: Any, metadata: dict[str, Any], path: Path) -> None:
    """Saves `graph` with `metadata` as its one Vigil entry, replacing the file whole (never half written)."""
    import onnx

    others = [entry for entry in graph.metadata_props if entry.key != METADATA_KEY]
    del graph.metadata_props[:]
    graph.metadata_props.extend(others)
    entry = graph.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    onnx.save(graph, str(partial))
    partial.replace(path)


def new_version(streams: list[str]) -> str:
    return f"{model_kind(streams)}-{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%S%fZ')}"
