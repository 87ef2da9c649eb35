"""`vigil infer`: one inference worker (run several for more throughput; they share the cameras)."""

from __future__ import annotations

import argparse
from pathlib import Path

from models.detector.runtime import InvalidModelError
from service.cli.commands.common import CommandError, require_redis_url
from workers.config import get_settings
from workers.inference.worker import InferenceWorker


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "infer",
        help="run an inference worker",
        description=(
            "Score the cameras' buffered frames with the detector, batching across cameras, and write "
            "scores, pixel error maps and alerts. Several workers share the cameras through Redis; a "
            "stopped worker's cameras and unscored frames are taken over by the others."
        ),
    )
    parser.add_argument(
        "--model",
        type=Path,
        help="detector weights (.onnx or .pt); default: the published current model, else the motion baseline",
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="where the detector runs")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    if args.model:
        settings.inference.model_path = args.model
    if args.device:
        settings.inference.device = args.device
    worker = InferenceWorker(settings, require_redis_url(settings, "infer"))
    try:
        return worker.run()
    except InvalidModelError as exc:
        raise CommandError(f"cannot serve the model: {exc}") from exc
