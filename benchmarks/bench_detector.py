"""Detector benchmark: inference throughput and latency (ONNX Runtime as served, PyTorch for comparison) at
batch 1/8/32/64 in fp32 and fp16 on CPU or a GPU, training time, and the one-class AUCs (causal as served,
raw, papers' per-video protocol) and wall-clock speed of `vigil eval` on each dataset (UCSD Ped1's
development part and Ped2 by default) for each precision.

    python benchmarks/bench_detector.py --train                      # fit a model to each dataset first
    python benchmarks/bench_detector.py --model ped1.onnx ped2.onnx  # a model per dataset, in order
    python benchmarks/bench_detector.py --model ped2.onnx --dataset ../shared/datasets/ped2 --device cuda --no-eval

Throughput is that of the first dataset's model's `Detector.stream_maps` as the inference worker calls it: the optical flow (OpenCV,
on the CPU) and the network; the flow alone is reported too. fp16 figures come from an fp16 conversion of
the fp32 model (same weights). On a GPU, ONNX Runtime is measured with I/O binding (as served) and without
it, and PyTorch with CUDA (fp16: autocast) when it sees the GPU, with the .pt weights of the same name.
A GPU run fails, rather than report CPU figures, when ONNX Runtime cannot use the GPU.

Writes benchmarks/results/detector-<device kind>-<machine>-<date>.json (figures, providers, machine and
GPU) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from benchmarks.harness import EVAL_RUNNER, write_report  # noqa: E402
from models.detector.base import DetectorInfo  # noqa: E402
from models.detector.export import convert_onnx_fp16  # noqa: E402
from models.detector.runtime import CPU_PROVIDER, PRECISIONS, OnnxDetector, TorchDetector, load_detector  # noqa: E402
from models.evaluation.jobs import machine_info, save_trained, train_on_dataset  # noqa: E402

DEFAULT_DATASETS = [PROJECT_ROOT.parent / "shared" / "datasets" / name for name in ("ped1", "ped2")]
BATCHES = (1, 8, 32, 64)
WARMUP_RUNS = 3  # first runs of a new batch shape pick kernels (cuDNN) or fill caches

Scorer = Callable[[np.ndarray], np.ndarray]


def moving_clips(info: DetectorInfo, batch: int) -> np.ndarray:
    """Clips of a textured view panning 2 pixels a frame: the flow has real work to do."""
    import cv2

    rng = np.random.default_rng(0)
    views = [
        cv2.GaussianBlur(
            rng.integers(0, 256, (info.height, info.width + 4 * info.history), np.uint8), (5, 5), 0
        )
        for _ in range(batch)
    ]
    steps = range(info.history, -1, -1)
    return np.stack([np.stack([view[:, 2 * k : 2 * k + info.width] for k in steps]) for view in views])


def measure_flow(detector: Any, args: argparse.Namespace) -> dict[int, float]:
    """Frames/s of the optical flow alone (the CPU pre-processing every runtime shares)."""
    from models.detector.flow import clip_speeds

    return {
        batch: measure(
            lambda clips: clip_speeds(clips, detector.flow), moving_clips(detector.info, batch), args.seconds
        )["fps"]
        for batch in args.batches
    }


def measure(score: Scorer, clips: np.ndarray, seconds: float) -> dict[str, float]:
    """Frames/s and per-batch latency of `score` (clips in host memory -> error maps in host memory)."""
    for _ in range(WARMUP_RUNS):
        score(clips)
    latencies: list[float] = []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds or len(latencies) < 5:
        begun = time.perf_counter()
        score(clips)
        latencies.append(time.perf_counter() - begun)
    elapsed = time.perf_counter() - started
    return {
        "fps": len(clips) * len(latencies) / elapsed,
        "latency_ms_p50": 1000 * float(np.percentile(latencies, 50)),
        "latency_ms_p95": 1000 * float(np.percentile(latencies, 95)),
        "runs": len(latencies),
    }


def measure_batches(
    results: dict[str, Any], runtime: str, score: Scorer, info: DetectorInfo, args: argparse.Namespace
) -> None:
    figures = {batch: measure(score, moving_clips(info, batch), args.seconds) for batch in args.batches}
    results["throughput_fps"][runtime] = {batch: f["fps"] for batch, f in figures.items()}
    results["latency_ms"][runtime] = {
        batch: {"p50": f["latency_ms_p50"], "p95": f["latency_ms_p95"], "runs": f["runs"]}
        for batch, f in figures.items()
    }
    print(f"{runtime}: " + ", ".join(f"batch {b} {f['fps']:.0f} frames/s" for b, f in figures.items()))


def torch_cuda_scorer(pt_path: Path, precision: str) -> Scorer:
    """The network in PyTorch on the GPU (fp16: autocast), the flow on the CPU as served."""
    import torch

    from models.detector.flow import clip_speeds

    detector = load_detector(pt_path, "cpu")
    assert isinstance(detector, TorchDetector)
    model = detector.model.cuda()

    def score(clips: np.ndarray) -> np.ndarray:
        speed = clip_speeds(clips, detector.flow)
        with (
            torch.inference_mode(),
            torch.autocast("cuda", dtype=torch.float16, enabled=precision == "fp16"),
        ):
            return model(torch.from_numpy(clips).cuda(), torch.from_numpy(speed).cuda()).float().cpu().numpy()

    return score


def gpu_info() -> list[dict[str, str]]:
    """The GPUs nvidia-smi lists (name, driver, memory); empty without one."""
    if shutil.which("nvidia-smi") is None:
        return []
    query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
    try:
        lines = subprocess.run(query, capture_output=True, text=True, check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    fields = ("name", "driver", "memory")
    return [
        dict(zip(fields, (p.strip() for p in line.split(",")), strict=False)) for line in lines.splitlines()
    ]


def device_kind(device: str, gpus: list[dict[str, str]]) -> str:
    """cpu, or the GPU's name as a file-name part (e.g. nvidia-h100-80gb-hbm3)."""
    if device == "cpu" or not gpus:
        return device
    return re.sub(r"[^a-z0-9]+", "-", gpus[0]["name"].lower()).strip("-")


def run_eval(dataset: Path, model: Path, device: str, threads: int) -> dict[str, Any]:
    """`vigil eval --model` in a fresh process: wall time includes start-up, loading and JPEG decoding."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        command = [
            sys.executable,
            "-c",
            EVAL_RUNNER,
            "eval",
            str(dataset),
            "--mode",
            "oneclass",
            "--model",
            str(model),
            "--threads",
            str(threads),
            "--report",
            str(report),
        ]
        started = time.perf_counter()
        environment = {**os.environ, "VIGIL_INFERENCE__DEVICE": device}
        subprocess.run(command, check=True, cwd=PROJECT_ROOT, env=environment)
        wall = time.perf_counter() - started
        figures = json.loads(report.read_text())
    frames = figures["timings"]["frames"]
    return {
        "metrics": figures["metrics"],
        "frames": frames,
        "process_wall_s": wall,
        "process_wall_fps": frames / wall,
        "timings": figures["timings"],
    }


def onnx_models(onnx_path: Path, precisions: list[str], tmp: Path) -> dict[str, Path]:
    """The model file of each precision: the model itself, and an fp16 conversion of an fp32 one."""
    own = load_detector(onnx_path, "cpu").info.metadata.get("precision", "fp32")
    models = {own: onnx_path}
    if "fp16" in precisions and own == "fp32":
        models["fp16"] = tmp / "model-fp16.onnx"
        convert_onnx_fp16(onnx_path, models["fp16"])
    missing = [p for p in precisions if p not in models]
    if missing:
        raise SystemExit(f"{onnx_path} is {own}: no {', '.join(missing)} figures from it")
    return {p: models[p] for p in precisions}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", type=Path, nargs="+", default=DEFAULT_DATASETS)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--model",
        type=Path,
        nargs="+",
        help="trained weights (.onnx), one per dataset in order; PyTorch figures use the .pt of the same "
        "name when present",
    )
    source.add_argument("--train", action="store_true", help="fit a model to each DATASET/training first")
    parser.add_argument("--streams", help="with --train: the evidence streams (default: the settings')")
    parser.add_argument("--device", choices=("cpu", "cuda", "tensorrt"), default="cpu")
    parser.add_argument("--precision", choices=(*PRECISIONS, "both"), default="both")
    parser.add_argument(
        "--batches", type=int, nargs="+", default=list(BATCHES), help="batch sizes (default 1 8 32 64)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for PyTorch and ONNX Runtime")
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring time per batch size")
    parser.add_argument("--no-eval", action="store_true", help="skip the `vigil eval` AUC runs")
    parser.add_argument(
        "--camera",
        help="ONNX throughput of clips served as this camera of a model fitted to several cameras (its own view)",
    )
    parser.add_argument("--out", type=Path)
    return parser.parse_args()


def dataset_models(args: argparse.Namespace, results: dict[str, Any], tmp: Path) -> dict[str, Path]:
    """The ONNX model of each dataset (by its folder's name): fitted here with --train, else --model's."""
    names = [dataset.resolve().name for dataset in args.dataset]
    if not args.train:
        if len(args.model) != len(names):
            raise SystemExit(f"--model: give one model per dataset ({len(names)}), in the same order")
        return dict(zip(names, args.model, strict=True))
    from models.detector.fitting import FitConfig
    from service.cli.commands.train import detector_config

    models, results["training"] = {}, {}
    for name, dataset in zip(names, args.dataset, strict=True):
        started = time.perf_counter()
        trained = train_on_dataset(dataset, detector_config(args), FitConfig(seed=args.seed))
        results["training"][name] = {**trained.metadata["training"], "wall_s": time.perf_counter() - started}
        models[name] = tmp / f"{name}.onnx"
        save_trained(trained, models[name])
        save_trained(trained, models[name].with_suffix(".pt"))
    return models


def served_as(detector: OnnxDetector, camera: str | None) -> Scorer:
    """What the inference worker scores a batch of `camera`'s clips with: the model's maps, in the camera's
    own view where the model keeps one (models/detector/views.py); without a camera, `stream_maps`."""
    if camera is None:
        return detector.stream_maps
    return lambda clips: detector.served_maps(clips, [camera] * len(clips))


def measure_throughput(results: dict[str, Any], onnx_path: Path, args: argparse.Namespace, tmp: Path) -> None:
    """Frames/s and latency of one model at every batch size, precision and runtime."""
    import torch

    precisions = list(PRECISIONS) if args.precision == "both" else [args.precision]
    pt_path = onnx_path.with_suffix(".pt")
    outputs: dict[str, np.ndarray] = {}
    for precision, path in onnx_models(onnx_path, precisions, tmp).items():
        detector = load_detector(
            path, args.device, args.threads, max_batch=max(args.batches), engine_cache=tmp / "engines"
        )
        assert isinstance(detector, OnnxDetector)
        runtime = f"onnxruntime_{args.device}_{precision}"
        providers = detector.session.get_providers()
        if args.device != "cpu" and providers[0] == CPU_PROVIDER:
            raise SystemExit(
                f"ONNX Runtime cannot use the GPU here (providers {providers}): see the log above"
            )
        results["providers"][runtime] = providers
        results.setdefault(
            "model",
            {
                "version": detector.info.version,
                "input": [detector.info.height, detector.info.width],
                "history": detector.info.history,
                "streams": detector.info.streams,
            },
        )
        results.setdefault("flow_only_fps", measure_flow(detector, args))
        results["model"][f"onnx_bytes_{precision}"] = path.stat().st_size
        measure_batches(results, runtime, served_as(detector, args.camera), detector.info, args)
        if detector.bind_device is not None:  # the same session without I/O binding, for comparison
            plain = OnnxDetector(detector.session, detector.info.metadata)
            measure_batches(results, f"{runtime}_no_iobinding", plain.stream_maps, detector.info, args)
        outputs[precision] = detector.stream_maps(moving_clips(detector.info, 8))
    if len(outputs) == 2:
        results["fp16_max_abs_diff"] = float(np.abs(outputs["fp16"] - outputs["fp32"]).max())
    info = detector.info
    if args.device == "cpu" and pt_path.is_file():
        torch_detector = load_detector(pt_path, "cpu", args.threads)
        measure_batches(results, "pytorch_cpu_fp32", torch_detector.stream_maps, info, args)
    elif args.device != "cpu" and torch.cuda.is_available() and pt_path.is_file():
        for precision in precisions:
            measure_batches(
                results, f"pytorch_cuda_{precision}", torch_cuda_scorer(pt_path, precision), info, args
            )


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    precisions = list(PRECISIONS) if args.precision == "both" else [args.precision]

    import torch

    torch.set_num_threads(args.threads)
    gpus = gpu_info()
    results: dict[str, Any] = {
        # CPU figures on a shared machine are only as good as its load
        "machine": {**machine_info(), "gpus": gpus, "load_average_1min_at_start": os.getloadavg()[0]},
        "device": args.device,
        "threads": args.threads,
        "camera": args.camera,  # ONNX clips served as this camera (None: `stream_maps`, the site's view)
        "seconds_per_batch_size": args.seconds,
        "datasets": [str(dataset) for dataset in args.dataset],
        "throughput_fps": {},
        "latency_ms": {},
        "providers": {},
    }
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        models = dataset_models(args, results, tmp)
        measure_throughput(results, next(iter(models.values())), args, tmp)
        if not args.no_eval:
            results["eval"] = {}
            for (name, model), dataset in zip(models.items(), args.dataset, strict=True):
                (tmp / name).mkdir()
                results["eval"][name] = {
                    precision: run_eval(dataset, path, args.device, args.threads)
                    for precision, path in onnx_models(model, precisions, tmp / name).items()
                }
    results["machine"]["load_average_1min_at_end"] = os.getloadavg()[0]
    out = write_report(results, f"detector-{device_kind(args.device, gpus)}", args.out)
    print(markdown_table(results))
    print(f"\nwritten to {out}")
    return 0


def markdown_table(results: dict[str, Any]) -> str:
    rows = ["| figure | frames/s | latency p50 / p95 (ms) |", "| --- | --- | --- |"]
    for runtime, figures in results["throughput_fps"].items():
        for batch, fps in figures.items():
            latency = results["latency_ms"][runtime][batch]
            rows.append(
                f"| {runtime}, batch {batch} | {fps:.0f} | {latency['p50']:.1f} / {latency['p95']:.1f} |"
            )
    for batch, fps in results.get("flow_only_fps", {}).items():
        rows.append(f"| optical flow alone, batch {batch} | {fps:.0f} | |")
    for name, training in (results.get("training") or {}).items():
        rows.append(
            f"| training from scratch on {name} ({training['frames']} frames) | {training['seconds']:.0f} s | |"
        )
    machine = results["machine"]
    gpu = f", {machine['gpus'][0]['name']}" if machine["gpus"] and results["device"] != "cpu" else ""
    rows.append(
        f"| machine | {machine['cpu']}, {machine['cores']} cores{gpu}, {results['threads']} threads | |"
    )
    if results.get("eval"):
        rows += [
            "",
            "| dataset, precision | micro AUC (causal, as served) | micro AUC (raw) | per-video AUC "
            "(papers' protocol) | `vigil eval` frames/s (wall) |",
            "| --- | --- | --- | --- | --- |",
        ]
    for name, by_precision in results.get("eval", {}).items():
        for precision, evaluation in by_precision.items():
            metrics = evaluation["metrics"] or {}
            aucs = " | ".join(
                f"{metrics[key]:.4f}" if key in metrics else "n/a"
                for key in ("micro_auc", "micro_auc_raw", "per_video_minmax_auc")
            )
            rows.append(f"| {name}, {precision} | {aucs} | {evaluation['process_wall_fps']:.0f} |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
