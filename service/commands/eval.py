"""`vigil eval DATASET_DIR --mode oneclass`: score every test frame the way the service does; AUCs, CSV, report.

The scores come from the service's own path (a CameraStream per video: causal history, normalization and
smoothing), so the printed micro AUC is what an operator would get. The papers' per-video min-max AUC,
which looks at each video's future frames, is printed for comparison only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

from models.data import DatasetError, list_videos
from models.runtime import SUFFIXES, InvalidModelError
from service.commands.train import add_training_arguments, network_config, set_threads, train_config
from workers.settings import get_settings

MODES = ("oneclass", "online", "coldstart")


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    if args.mode != "oneclass":
        print(f"vigil eval: --mode {args.mode} is not available yet; use --mode oneclass", file=sys.stderr)
        return 2
    for flag, value in (("--model", args.model), ("--save-model", args.save_model)):
        if value is not None and Path(value).suffix not in SUFFIXES:
            print(f"vigil eval: {flag} must end in {' or '.join(SUFFIXES)}", file=sys.stderr)
            return 2
    from models.pipeline import (
        machine_info,
        score_testing,
        serving_detector,
        train_on_dataset,
        write_scores_csv,
    )
    from models.runtime import load_detector

    dataset = Path(args.dataset)
    inference = get_settings().inference
    training: dict[str, Any] | None = None
    try:
        list_videos(dataset, "testing")  # a bad dataset fails before any training or loading
        set_threads(args.threads)
        if args.model:
            detector = load_detector(Path(args.model), inference.device, args.threads)
            if args.save_model:
                print("vigil eval: --save-model ignored with --model (nothing is trained)", file=sys.stderr)
        else:
            trained = train_on_dataset(
                dataset, network_config(), train_config(args), train_videos=args.train_videos
            )
            training = {**trained.metadata["training"], "total_s": trained.seconds}
            save_path = Path(args.save_model) if args.save_model else None
            detector = serving_detector(trained, save_path, inference.device, args.threads)
        loaded = time.monotonic()
        result = score_testing(dataset, detector)
    except (DatasetError, InvalidModelError, ValueError) as exc:
        print(f"vigil eval: {exc}", file=sys.stderr)
        return 2
    if args.scores_out:
        write_scores_csv(result.scores, Path(args.scores_out))
    wall = time.monotonic() - started
    frames = int(result.timings["frames"])
    print(
        f"scored {frames} frames of {len(result.scores)} videos with {detector.info.version} "
        f"({frames / (time.monotonic() - loaded):.0f} frames/s after loading, {wall:.1f} s in all)"
    )
    if result.metrics is not None:
        print(f"micro AUC (causal, as served): {result.metrics['micro_auc']:.4f}")
        print(f"micro AUC of raw scores:       {result.metrics['micro_auc_raw']:.4f}")
        print(f"per-video min-max AUC (papers' protocol): {result.metrics['per_video_minmax_auc']:.4f}")
    if args.report:
        report = {
            "mode": args.mode,
            "dataset": str(dataset),
            "model": str(args.model) if args.model else None,
            "model_version": detector.info.version,
            "input": {
                "height": detector.info.height,
                "width": detector.info.width,
                "history": detector.info.history,
            },
            "seed": args.seed,
            "train_videos": args.train_videos,
            "metrics": result.metrics,
            "training": training,
            "timings": {**result.timings, "wall_s": wall, "wall_fps": frames / wall},
            "machine": machine_info(),
            "threads": args.threads,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a detector on DATASET_DIR/testing (AUC, scores CSV, report)",
        description="Score every frame of DATASET_DIR/testing exactly as the service does and print the "
        "frame-level AUCs when DATASET_DIR/labels.json exists. Without --model, a detector is first "
        "trained on DATASET_DIR/training.",
    )
    parser.add_argument("dataset", metavar="DATASET_DIR")
    parser.add_argument("--mode", choices=MODES, default="oneclass", help="evaluation protocol (oneclass)")
    parser.add_argument("--model", metavar="PATH", help="score with these weights instead of training")
    parser.add_argument("--save-model", metavar="PATH", help="write the trained weights (.onnx or .pt)")
    parser.add_argument(
        "--scores-out", metavar="FILE.csv", help="write video,frame,score for every test frame"
    )
    parser.add_argument("--report", metavar="FILE.json", help="write AUCs, timings and machine info as JSON")
    add_training_arguments(parser)
    parser.set_defaults(handler=run)
