"""`vigil train DATASET_DIR --out MODEL`: fit a detector to a dataset's normal training footage, or
`vigil train --from-camera ID[,ID...] [--minutes N] --out MODEL` (or `--all-cameras`) to cameras'
buffered frames."""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from models.detector.runtime import PRECISIONS, SUFFIXES, InvalidModelError
from models.evaluation.datasets import FIT_FOOTAGE_FRAMES, DatasetError
from service.cli.commands.common import CommandError, connect_site, require_redis_url
from workers.config import get_settings
from workers.store.cameras import analysis_fps as cameras_analysis_fps
from workers.store.cameras import get_camera, list_cameras
from workers.store.cameras import source_size as cameras_source_size
from workers.store.frames import buffered_runs

if TYPE_CHECKING:
    import numpy as np
    import redis

    from models.detector.fitting import FitConfig, TrainedModel
    from models.detector.streams import DetectorConfig

DEFAULT_MINUTES = 10.0
MIN_CAMERA_FRAMES = 50  # fewer leave too little footage to hold out normal frames for the statistics
STREAM_NAMES = ("motion", "appearance", "place", "prediction")


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """The training options `vigil train` and `vigil eval` share."""
    parser.add_argument(
        "--streams",
        help="comma-separated evidence streams among motion, appearance, place (needs motion), prediction "
        "(default: VIGIL_DETECTOR__STREAMS, motion,appearance,place)",
    )
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument(
        "--minutes",
        type=float,
        help=f"training time of the prediction stream's U-Net (default {DEFAULT_MINUTES:g})",
    )
    budget.add_argument("--epochs", type=float, help="the U-Net's budget in passes over the training clips")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--train-videos", type=int, metavar="N", help="train on the first N training videos only"
    )
    parser.add_argument(
        "--footage-frames",
        type=int,
        metavar="N",
        help=f"training frames a fit reads at most; longer footage is read as runs spread evenly over "
        f"each video, and cameras' as each one's newest share (default {FIT_FOOTAGE_FRAMES}, about "
        "1.7 GB of memory at 360x240)",
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="CPU threads for PyTorch/ONNX Runtime (0: all)"
    )


def fit_config(args: argparse.Namespace, minutes: float | None) -> FitConfig:
    """The fit's options; `minutes` is the U-Net's training time (None: the default)."""
    from models.detector.fitting import FitConfig
    from models.detector.predictor_training import TrainConfig

    if args.epochs is not None:
        if args.epochs <= 0:
            raise ValueError("--epochs must be positive")
        train = TrainConfig(minutes=None, epochs=args.epochs, seed=args.seed)
    else:
        minutes = DEFAULT_MINUTES if minutes is None else minutes
        if minutes <= 0:
            raise ValueError("--minutes must be positive")
        train = TrainConfig(minutes=minutes, seed=args.seed)
    return FitConfig(seed=args.seed, train=train)


def footage_frames(args: argparse.Namespace) -> int:
    """How many training frames a fit reads at most (--footage-frames)."""
    frames = FIT_FOOTAGE_FRAMES if args.footage_frames is None else args.footage_frames
    if frames < 1:
        raise ValueError("--footage-frames must be at least 1")
    return frames


def detector_config(args: argparse.Namespace) -> DetectorConfig:
    """The detector to build: the settings' analysis size and detector section, --streams over them."""
    settings = get_settings()
    streams = settings.detector.streams
    if args.streams:
        streams = [name.strip() for name in args.streams.split(",") if name.strip()]
        unknown = [name for name in streams if name not in STREAM_NAMES]
        if unknown or not streams:
            raise ValueError(f"--streams: choose among {', '.join(STREAM_NAMES)} (got {args.streams!r})")
    return settings.detector.config(settings.analysis.height, settings.analysis.width, streams)


def set_threads(threads: int) -> None:
    import torch

    if threads > 0:
        torch.set_num_threads(threads)


def companion_weights(path: Path) -> Path:
    """The PyTorch weights written beside an .onnx model: self-training fine-tunes them."""
    return path.with_suffix(".pt")


def camera_ids(values: list[str]) -> list[str]:
    """The cameras --from-camera names (repeated or comma-separated: a camera id holds no comma), each once,
    in the order given."""
    named = [camera.strip() for value in values for camera in value.split(",")]
    if not all(named):
        raise CommandError(f"--from-camera: an empty camera id in {','.join(values)!r}")
    return list(dict.fromkeys(named))


def newest_frames(runs: list[np.ndarray], limit: int) -> list[np.ndarray]:
    """The newest `limit` frames of a camera's runs (oldest first), as runs: the oldest cut first."""
    kept: list[np.ndarray] = []
    for run in reversed(runs):
        if limit <= 1:  # a run of one frame has no motion to learn
            break
        kept.append(run[-limit:])
        limit -= len(kept[-1])
    return kept[::-1]


def site_cameras(client: redis.Redis, args: argparse.Namespace) -> list[str]:
    """The cameras to fit to: those --from-camera names, each of them configured, or with --all-cameras
    every enabled one."""
    if args.all_cameras:
        cameras = [camera.id for camera in list_cameras(client) if camera.enabled]
        if not cameras:
            raise CommandError("--all-cameras: the site has no enabled camera (see `vigil cameras list`)")
        return cameras
    cameras = camera_ids(args.from_camera)
    for camera in cameras:
        if get_camera(client, camera) is None:
            raise CommandError(f"no camera {camera!r} (see `vigil cameras list`)")
    return cameras


def train_on_cameras(args: argparse.Namespace, config: DetectorConfig, checkpoint: Path) -> TrainedModel:
    """Fits to the cameras' buffered frames (the newest --minutes of each when given), split into
    continuous runs as dataset videos are. A site whose cameras see different scenes is fitted to all of
    them together: a model fitted to one camera's view scores another's as a site it does not know."""
    from models.detector.fitting import train_detector

    if args.minutes is not None and args.minutes <= 0:
        raise ValueError("--minutes must be positive")
    client = connect_site(require_redis_url(get_settings(), "train"))
    cameras = site_cameras(client, args)
    # the flow their pixels and frame rate call for
    config = config.for_source(cameras_source_size(client, cameras), cameras_analysis_fps(client, cameras))
    since = time.time() - 60.0 * args.minutes if args.minutes is not None else None
    span = f"in the last {args.minutes:g} minutes" if args.minutes is not None else "buffered"
    share = max(footage_frames(args) // len(cameras), MIN_CAMERA_FRAMES)  # each camera's, newest first
    videos: dict[str, np.ndarray] = {}
    video_cameras: dict[str, str] = {}  # each camera's own view is fitted too (models/detector/views.py)
    flows = {}  # measured with the flow its own pixels and frame rate call for
    digest = hashlib.sha256()
    for camera in cameras:
        flows[camera] = config.for_source(
            cameras_source_size(client, [camera]), cameras_analysis_fps(client, [camera])
        ).flow
        shape = (config.height, config.width)
        runs = [run for run in buffered_runs(client, camera, since, shape) if len(run) > 1]
        frames = sum(len(run) for run in runs)
        if frames < MIN_CAMERA_FRAMES:  # each camera's view must be learned, not only the site's
            leave_out = " (leave it out: name the others with --from-camera)" if args.all_cameras else ""
            raise CommandError(
                f"camera {camera!r} has {frames} analysis frames {span}; fitting needs at least "
                f"{MIN_CAMERA_FRAMES}{leave_out} (is it streaming? VIGIL_ANALYSIS__BUFFER_SECONDS sets how "
                "much is kept)"
            )
        for index, run in enumerate(newest_frames(runs, share)):
            digest.update(run.tobytes())
            videos[f"{camera}-{index:03d}"] = run
            video_cameras[f"{camera}-{index:03d}"] = camera
    source = {
        "dataset": f"camera:{','.join(cameras)}",
        "data_hash": digest.hexdigest()[:16],
        "videos": len(videos),
    }
    return train_detector(
        videos, config, source, fit_config(args, None), checkpoint, args.resume, video_cameras, flows
    )


def run(args: argparse.Namespace) -> int:
    from models.evaluation.jobs import save_trained, train_on_dataset

    out = Path(args.out)
    if out.suffix not in SUFFIXES:
        print(f"vigil train: --out must end in {' or '.join(SUFFIXES)}", file=sys.stderr)
        return 2
    if args.precision != "fp32" and out.suffix != ".onnx":
        print(f"vigil train: --precision {args.precision} needs an .onnx --out", file=sys.stderr)
        return 2
    sources = (args.dataset is not None) + (args.from_camera is not None) + args.all_cameras
    if sources != 1:
        print("vigil train: give one of DATASET_DIR, --from-camera ID or --all-cameras", file=sys.stderr)
        return 2
    try:
        config = detector_config(args)
        set_threads(args.threads)
        checkpoint = out.with_name(out.name + ".ckpt")
        if args.dataset is None:
            trained = train_on_cameras(args, config, checkpoint)
        else:
            trained = train_on_dataset(
                Path(args.dataset),
                config,
                fit_config(args, args.minutes),
                train_videos=args.train_videos,
                footage_frames=footage_frames(args),
                analysis_fps=get_settings().analysis.fps,
                checkpoint=checkpoint,
                resume=args.resume,
            )
        save_trained(trained, out, precision=args.precision)
        if out.suffix == ".onnx":
            save_trained(trained, companion_weights(out))
    except (CommandError, DatasetError, InvalidModelError, ValueError) as exc:
        print(f"vigil train: {exc}", file=sys.stderr)
        return 2
    training = trained.metadata["training"]
    written = f"{out} and {companion_weights(out).name}" if out.suffix == ".onnx" else str(out)
    print(
        f"trained {trained.metadata['version']} ({', '.join(config.streams)}) on {training['videos']} videos "
        f"({training['frames']} frames) in {training['seconds']:.0f} s -> {written} ({args.precision})"
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a detector on DATASET_DIR/training or cameras' buffered frames",
        description="Fit the detector to the normal footage of DATASET_DIR/training (layout: "
        "training/<video>/<frames> or training/<video>.mp4|.avi|.mkv), or with --from-camera to the "
        "analysis frames cameras have buffered in Redis: the normal speed at every pixel, a memory of normal appearance, and "
        "(with the prediction stream) a U-Net trained with pseudo anomalies. Writes .onnx (ONNX Runtime; "
        "MODEL.pt beside it, for self-training) or .pt (PyTorch). With the prediction stream a checkpoint "
        "MODEL.ckpt is kept so that --resume continues an interrupted run.",
    )
    parser.add_argument("dataset", metavar="DATASET_DIR", nargs="?")
    parser.add_argument(
        "--from-camera",
        metavar="ID[,ID...]",
        action="append",
        help="fit to these cameras' buffered frames instead of a dataset (repeat it or separate ids by "
        "commas; name every camera of a site whose cameras see different scenes: one model serves them "
        "all); --minutes N then takes each one's newest N minutes of footage (default: all it buffers) "
        "and the U-Net trains for its default time or --epochs",
    )
    parser.add_argument(
        "--all-cameras",
        action="store_true",
        help="fit to the buffered frames of every enabled camera of the site, as --from-camera naming them all",
    )
    parser.add_argument("--out", required=True, metavar="MODEL", help="output weights (.onnx or .pt)")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="ONNX compute precision (default fp32); fp16 halves the weights and speeds up GPUs, "
        "inputs and output stay the same",
    )
    add_training_arguments(parser)
    parser.add_argument("--resume", action="store_true", help="continue from MODEL.ckpt when it exists")
    parser.set_defaults(handler=run)
