"""Detector benchmark: inference throughput (ONNX Runtime and PyTorch, CPU, batch 1/8/32), training time,
and the one-class AUC and wall-clock speed of `vigil eval` on a dataset (Ped2 by default).

    python benchmarks/bench_detector.py --model data/models/ped2-default.onnx      # a trained model
    python benchmarks/bench_detector.py --train-minutes 10                         # train one first

Writes benchmarks/results/detector-<machine>-<date>.json (figures + machine info) and prints a table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from models.detector import Detector  # noqa: E402
from models.pipeline import machine_info, save_trained, train_on_dataset  # noqa: E402
from models.runtime import load_detector  # noqa: E402
from models.training import TrainConfig  # noqa: E402
from service.commands.train import network_config  # noqa: E402

DEFAULT_DATASET = PROJECT_ROOT.parent / "shared" / "datasets" / "ped2"
BATCHES = (1, 8, 32)
EVAL_RUNNER = (
    "import argparse, sys; from service.commands import eval as command; "
    "parser = argparse.ArgumentParser(); command.register(parser.add_subparsers()); "
    "args = parser.parse_args(sys.argv[1:]); sys.exit(args.handler(args))"
)


def throughput(detector: Detector, batch: int, seconds: float) -> float:
    """Frames per second of error_maps + nothing else, on random clips (speed does not depend on content)."""
    info = detector.info
    clips = np.random.default_rng(0).integers(
        0, 256, (batch, info.history + 1, info.height, info.width), np.uint8
    )
    detector.error_maps(clips)  # warm-up
    frames, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        detector.error_maps(clips)
        frames += batch
    return frames / elapsed


def run_eval(dataset: Path, model: Path, threads: int) -> dict[str, Any]:
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
        subprocess.run(command, check=True, cwd=PROJECT_ROOT)
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


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--model",
        type=Path,
        help="trained weights (.onnx); PyTorch figures use the .pt of the same name when present",
    )
    source.add_argument("--train-minutes", type=float, help="train a model on DATASET/training first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="threads for PyTorch and ONNX Runtime")
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring time per throughput figure")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import torch

    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {
        "machine": machine_info(),
        "threads": args.threads,
        "dataset": str(args.dataset),
    }
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path, pt_path = Path(tmp) / "model.onnx", Path(tmp) / "model.pt"
        if args.train_minutes is not None:
            started = time.perf_counter()
            trained = train_on_dataset(
                args.dataset, network_config(), TrainConfig(minutes=args.train_minutes, seed=args.seed)
            )
            results["training"] = {**trained.metadata["training"], "wall_s": time.perf_counter() - started}
            save_trained(trained, onnx_path)
            save_trained(trained, pt_path)
        else:
            onnx_path, pt_path = args.model, args.model.with_suffix(".pt")
            if not pt_path.is_file():
                print(f"no {pt_path}: PyTorch throughput is skipped", file=sys.stderr)
        onnx_detector = load_detector(onnx_path, "cpu", args.threads)
        results.setdefault("training", onnx_detector.info.metadata.get("training"))
        results["model"] = {
            "version": onnx_detector.info.version,
            "input": [onnx_detector.info.height, onnx_detector.info.width],
            "history": onnx_detector.info.history,
            "onnx_bytes": onnx_path.stat().st_size,
        }
        results["throughput_fps"] = {
            "onnxruntime_cpu": {b: throughput(onnx_detector, b, args.seconds) for b in BATCHES}
        }
        if pt_path.is_file():
            torch_detector = load_detector(pt_path, "cpu", args.threads)
            results["throughput_fps"]["pytorch_cpu"] = {
                b: throughput(torch_detector, b, args.seconds) for b in BATCHES
            }
        results["eval"] = run_eval(args.dataset, onnx_path, args.threads)
    results["created"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")

    out = args.out or PROJECT_ROOT / "benchmarks" / "results" / (
        f"detector-{platform.node() or 'machine'}-{dt.date.today().isoformat()}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown_table(results))
    print(f"\nwritten to {out}")
    return 0


def markdown_table(results: dict[str, Any]) -> str:
    rows = ["| figure | value |", "| --- | --- |"]
    for runtime, figures in results["throughput_fps"].items():
        for batch, fps in figures.items():
            rows.append(f"| {runtime} ({results['threads']} threads), batch {batch} | {fps:.0f} frames/s |")
    evaluation = results["eval"]
    if evaluation["metrics"]:
        rows.append(f"| one-class micro AUC (causal, as served) | {evaluation['metrics']['micro_auc']:.4f} |")
        rows.append(
            f"| per-video min-max AUC (papers' protocol) | {evaluation['metrics']['per_video_minmax_auc']:.4f} |"
        )
    rows.append(
        f"| `vigil eval --model` wall, {evaluation['frames']} frames | {evaluation['process_wall_s']:.1f} s "
        f"({evaluation['process_wall_fps']:.0f} frames/s incl. start-up and decoding) |"
    )
    training = results.get("training")
    if training:
        rows.append(
            f"| training ({training['frames']} frames, {training['steps']} steps) | {training['seconds']:.0f} s |"
        )
    rows.append(f"| machine | {results['machine']['cpu']}, {results['machine']['cores']} cores |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
