"""`vigil train DATASET_DIR --out MODEL`: train a detector on a dataset's normal training footage."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from models.data import DatasetError
from models.network import NetworkConfig
from models.runtime import PRECISIONS, SUFFIXES, InvalidModelError
from models.training import TrainConfig
from workers.settings import get_settings

DEFAULT_MINUTES = 10.0


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """The training options `vigil train` and `vigil eval` share."""
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, help=f"training time budget (default {DEFAULT_MINUTES:g})")
    budget.add_argument("--epochs", type=float, help="training budget in passes over the training clips")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--train-videos", type=int, metavar="N", help="train on the first N training videos only"
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="CPU threads for PyTorch/ONNX Runtime (0: all)"
    )


def train_config(args: argparse.Namespace) -> TrainConfig:
    if args.epochs is not None:
        if args.epochs <= 0:
            raise ValueError("--epochs must be positive")
        return TrainConfig(minutes=None, epochs=args.epochs, seed=args.seed)
    minutes = DEFAULT_MINUTES if args.minutes is None else args.minutes
    if minutes <= 0:
        raise ValueError("--minutes must be positive")
    return TrainConfig(minutes=minutes, seed=args.seed)


def network_config() -> NetworkConfig:
    analysis = get_settings().analysis
    return NetworkConfig.for_size(analysis.height, analysis.width)


def set_threads(threads: int) -> None:
    import torch

    if threads > 0:
        torch.set_num_threads(threads)


def run(args: argparse.Namespace) -> int:
    from models.pipeline import train_on_dataset
    from models.runtime import save_detector

    out = Path(args.out)
    if out.suffix not in SUFFIXES:
        print(f"vigil train: --out must end in {' or '.join(SUFFIXES)}", file=sys.stderr)
        return 2
    if args.precision != "fp32" and out.suffix != ".onnx":
        print(f"vigil train: --precision {args.precision} needs an .onnx --out", file=sys.stderr)
        return 2
    try:
        config = train_config(args)
        set_threads(args.threads)
        trained = train_on_dataset(
            Path(args.dataset),
            network_config(),
            config,
            train_videos=args.train_videos,
            checkpoint=out.with_name(out.name + ".ckpt"),
            resume=args.resume,
        )
        save_detector(trained.detector.model, trained.metadata, out, precision=args.precision)
    except (DatasetError, InvalidModelError, ValueError) as exc:
        print(f"vigil train: {exc}", file=sys.stderr)
        return 2
    training = trained.metadata["training"]
    print(
        f"trained {trained.metadata['version']} on {training['videos']} videos ({training['frames']} frames): "
        f"{training['steps']} steps in {training['seconds']:.0f} s -> {out} ({args.precision})"
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a detector on DATASET_DIR/training",
        description="Train the frame-prediction detector on the normal footage of DATASET_DIR/training "
        "(layout: training/<video>/<frames>) and write it as .onnx (ONNX Runtime) or .pt (PyTorch). "
        "A checkpoint MODEL.ckpt is kept so that --resume continues an interrupted run.",
    )
    parser.add_argument("dataset", metavar="DATASET_DIR")
    parser.add_argument("--out", required=True, metavar="MODEL", help="output weights (.onnx or .pt)")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="ONNX compute precision (default fp32); fp16 halves the weights and speeds up GPUs, "
        "input and output stay the same",
    )
    add_training_arguments(parser)
    parser.add_argument("--resume", action="store_true", help="continue from MODEL.ckpt when it exists")
    parser.set_defaults(handler=run)
