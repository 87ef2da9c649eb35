"""`vigil eval DATASET_DIR --mode oneclass|online|coldstart`: score every test frame the way the service does.

The scores come from the service's own path (a CameraStream per video: causal history, normalization and
smoothing), so the printed micro AUC is what an operator would get. The papers' per-video min-max AUC,
which looks at each video's future frames, is printed for comparison only. So are the alerts the service's
hysteresis would raise on those scores, and their event metrics (models/evaluation/events.py).

online and coldstart stream the videos (each as a camera: the one cameras.json or --camera names, whose own
view a model fitted to several cameras keeps) through the retraining worker's self-training
loop (models/selftrain/trainer.py): the streamed scores are those the service would have served, model swaps
included; the final model then rescores every test frame.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.detector.runtime import SUFFIXES, InvalidModelError
from models.evaluation.datasets import DatasetError, list_videos, source_size, video_cameras
from service.cli.commands.train import (
    add_training_arguments,
    companion_weights,
    detector_config,
    fit_config,
    footage_frames,
    set_threads,
)
from workers.config import get_settings, hysteresis_config

if TYPE_CHECKING:
    from models.detector.base import Detector
    from models.evaluation.jobs import Split

MODES = ("oneclass", "online", "coldstart")


def run(args: argparse.Namespace) -> int:
    for flag, value in (("--model", args.model), ("--save-model", args.save_model)):
        if value is not None and Path(value).suffix not in SUFFIXES:
            print(f"vigil eval: {flag} must end in {' or '.join(SUFFIXES)}", file=sys.stderr)
            return 2
    if args.camera is not None and args.mode == "coldstart":
        print(
            "vigil eval: --camera scores a start model's view: use it with --mode oneclass or online",
            file=sys.stderr,
        )
        return 2
    if args.mode == "coldstart" and args.model:
        print("vigil eval: --mode coldstart starts with no model; leave out --model", file=sys.stderr)
        return 2
    names = dataset_names([Path(d) for d in args.dataset])
    reports: dict[str, dict[str, Any]] = {}
    for name, dataset in names.items():
        if len(names) > 1:
            print(f"== {name} ({dataset})")
        started = time.monotonic()
        one = _for_dataset(args, name) if len(names) > 1 else args
        try:
            list_videos(dataset, "testing")  # a bad dataset fails before any training or loading
            set_threads(args.threads)
            report = _oneclass(one, dataset) if args.mode == "oneclass" else _online(one, dataset)
        except (DatasetError, InvalidModelError, ValueError) as exc:
            print(f"vigil eval: {exc}", file=sys.stderr)
            return 2
        wall = time.monotonic() - started
        report["timings"]["wall_s"] = wall
        report["timings"]["wall_fps"] = report["timings"]["frames"] / wall
        report["dataset"] = str(dataset)
        reports[name] = report
    if len(reports) > 1:
        print(summary_table(reports))
    if args.report:
        from models.evaluation.jobs import machine_info

        written = next(iter(reports.values())) if len(reports) == 1 else {"datasets": reports}
        written.update(
            mode=args.mode,
            model=str(args.model) if args.model else None,
            seed=args.seed,
            train_videos=args.train_videos,
            machine=machine_info(),
            threads=args.threads,
            created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        )
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(json.dumps(written, indent=2) + "\n")
    return 0


OUTPUT_FLAGS = ("save_model", "scores_out", "start_scores_out", "final_scores_out", "alerts_out")


def dataset_names(datasets: list[Path]) -> dict[str, Path]:
    """A short name for each dataset (its folder's name; numbered where two share one)."""
    names: dict[str, Path] = {}
    for dataset in datasets:
        name = dataset.resolve().name or "dataset"
        names[name if name not in names else f"{name}-{len(names) + 1}"] = dataset
    return names


def _for_dataset(args: argparse.Namespace, name: str) -> argparse.Namespace:
    """The arguments of one dataset's run among several: each output file gets the dataset's name
    (scores.csv -> scores-ped1.csv)."""
    outputs = {
        flag: str(Path(value).with_stem(f"{Path(value).stem}-{name}"))
        for flag in OUTPUT_FLAGS
        if (value := getattr(args, flag)) is not None
    }
    return argparse.Namespace(**{**vars(args), **outputs})


def summary_table(reports: dict[str, dict[str, Any]]) -> str:
    """One row per dataset: the AUCs, the alerts' event metrics and the scoring speed (the loop's wall speed
    for online and coldstart)."""

    def figure(value: float | None, spec: str = ".4f") -> str:
        return "n/a" if value is None else format(value, spec)

    rows = [
        "| dataset | micro AUC (causal) | micro AUC (raw) | per-video AUC | event recall | "
        "alert precision | frames/s scored |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, report in reports.items():
        metrics = report.get("metrics") or {}
        events = report.get("events") or {}
        fps = report["timings"].get("score_fps", report["timings"]["wall_fps"])  # online: the whole loop's
        rows.append(
            f"| {name} | {figure(metrics.get('micro_auc'))} | {figure(metrics.get('micro_auc_raw'))} | "
            f"{figure(metrics.get('per_video_minmax_auc'))} | {figure(events.get('event_recall'), '.3f')} | "
            f"{figure(events.get('alert_precision'), '.3f')} | {fps:.0f} |"
        )
    return "\n".join(rows)


def _print_metrics(title: str, metrics: dict[str, float] | None) -> None:
    if metrics is None:
        return
    print(f"{title}micro AUC (causal, as served): {metrics['micro_auc']:.4f}")
    print(f"{title}micro AUC of raw scores:       {metrics['micro_auc_raw']:.4f}")
    print(f"{title}per-video min-max AUC (papers' protocol): {metrics['per_video_minmax_auc']:.4f}")


def _print_events(title: str, events: dict[str, Any] | None) -> None:
    if events is None:
        return

    def fmt(key: str, spec: str = ".3f") -> str:
        value = events[key]
        return "n/a" if value is None else format(value, spec)

    print(
        f"{title}alerts at threshold {events['threshold']:.3f}: {events['alerts']} "
        f"({events['false_alerts']} false); event recall {fmt('event_recall')} "
        f"of {events['events']} events, alert precision {fmt('alert_precision')}, "
        f"false alerts/hour {fmt('false_alerts_per_hour', '.1f')}, "
        f"delay median {fmt('delay_median_s', '.1f')} s, p90 {fmt('delay_p90_s', '.1f')} s"
    )


def _start_detector(
    args: argparse.Namespace, dataset: Path, keep_torch: bool
) -> tuple[Any, dict[str, Any] | None]:
    """The detector to start from (--model, else trained on DATASET/training) and the training summary."""
    from models.detector.runtime import load_detector
    from models.evaluation.jobs import serving_detector, train_on_dataset

    inference = get_settings().inference
    if args.model:
        path = Path(args.model)
        if not path.is_file():
            raise InvalidModelError(f"{path}: no such model file")
        if keep_torch:
            weights = path if path.suffix == ".pt" else companion_weights(path)
            if not weights.is_file():
                raise InvalidModelError(
                    f"{path}: online mode fine-tunes PyTorch weights; give a .pt file or put "
                    f"{weights.name} beside it (vigil train writes both)"
                )
            return load_detector(weights, "cpu", args.threads), None
        if args.save_model:
            print("vigil eval: --save-model ignored with --model (nothing is trained)", file=sys.stderr)
        return load_detector(path, inference.device, args.threads), None
    trained = train_on_dataset(
        dataset,
        detector_config(args),
        fit_config(args, args.minutes),
        train_videos=args.train_videos,
        footage_frames=footage_frames(args),
        analysis_fps=get_settings().analysis.fps,
    )
    training = {**trained.metadata["training"], "total_s": trained.seconds}
    if keep_torch:
        return trained.detector, training
    save_path = Path(args.save_model) if args.save_model else None
    return serving_detector(trained, save_path, inference.device, args.threads), training


def _warn_without_view(args: argparse.Namespace, detector: Detector) -> None:
    """Says so where --camera names a camera the model keeps no view of (it is scored as the site)."""
    if args.camera is not None and args.camera not in detector.info.camera_views:
        kept = ", ".join(sorted(detector.info.camera_views)) or "none"
        print(
            f"vigil eval: the model keeps no view of camera {args.camera!r} (its cameras: {kept}): scoring as "
            "the site",
            file=sys.stderr,
        )


def _oneclass(args: argparse.Namespace, dataset: Path) -> dict[str, Any]:
    from models.evaluation.events import write_alerts_csv
    from models.evaluation.jobs import score_testing, write_scores_csv

    detector, training = _start_detector(args, dataset, keep_torch=False)
    loaded = time.monotonic()
    settings = get_settings()
    _warn_without_view(args, detector)
    result = score_testing(
        dataset,
        detector,
        lambda fps: hysteresis_config(settings.alerts, fps=fps),
        settings.analysis.fps,
        args.camera,
    )
    if args.scores_out:
        write_scores_csv(result.scores, Path(args.scores_out), result.split)
    if args.alerts_out:
        write_alerts_csv(result.alerts, Path(args.alerts_out), result.split.native if result.split else None)
    frames = int(result.timings["frames"])
    print(
        f"scored {frames} frames of {len(result.scores)} videos with {detector.info.version} "
        f"({frames / (time.monotonic() - loaded):.0f} frames/s after loading)"
    )
    _print_metrics("", result.metrics)
    _print_events("", result.events)
    return {
        "model_version": detector.info.version,
        "input": {
            "height": detector.info.height,
            "width": detector.info.width,
            "history": detector.info.history,
        },
        "metrics": result.metrics,
        "events": result.events,
        "training": training,
        "timings": dict(result.timings),
    }


def _alerts(
    args: argparse.Namespace,
    dataset: Path,
    scores: dict[str, Any],
    labels: dict[str, Any] | None,
    adaptive: float | None,
    split: Split,
) -> dict[str, Any] | None:
    """The alerts the service raises on the served scores (with the model's adaptive threshold when it has
    one, as the worker does): printed, written to --alerts-out, and their event metrics returned."""
    from models.evaluation.events import write_alerts_csv
    from models.evaluation.jobs import alert_quality

    events, alerts = alert_quality(
        dataset,
        scores,
        labels,
        hysteresis_config(get_settings().alerts, adaptive=adaptive, fps=split.fps),
        split.fps,
    )
    _print_events("", events)
    if args.alerts_out:
        write_alerts_csv(alerts, Path(args.alerts_out), split.native)
    return events


def _coldstart_stream(
    args: argparse.Namespace, dataset: Path, test_frames: dict[str, Any], size: tuple[int, int]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Training and testing videos in a seeded order, each named <split>/<video>, and the camera of each
    that cameras.json names."""
    import numpy as np

    from models.evaluation.jobs import entry_cameras, read_analysed

    split = read_analysed(
        dataset, "training", *size, budget=footage_frames(args), analysis_fps=get_settings().analysis.fps
    )
    train_frames = split.frames
    train_cameras = entry_cameras(split, video_cameras(dataset))
    names = [("training", n) for n in train_frames] + [("testing", n) for n in test_frames]
    order = np.random.default_rng(args.seed).permutation(len(names))
    stream = {
        f"{split}/{name}": (train_frames if split == "training" else test_frames)[name]
        for split, name in (names[i] for i in order)
    }
    return stream, {f"training/{name}": camera for name, camera in train_cameras.items()}


def _streamed_cameras(
    args: argparse.Namespace, dataset: Path, test: Split, size: tuple[int, int]
) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """What online (the test videos) or coldstart (training and testing videos) streams, the camera of each
    streamed video and of each test video: --camera, else as cameras.json names it. Each is then scored and
    retrained in its camera's own view, as the workers do a site's cameras."""
    from models.evaluation.jobs import entry_cameras
    from models.evaluation.online import check_cameras

    named = {v.name: args.camera for v in test.videos} if args.camera else video_cameras(dataset)
    test_cameras = entry_cameras(test, named)
    if args.mode == "online":
        stream, cameras = dict(test.frames), test_cameras
    else:
        stream, train_cameras = _coldstart_stream(args, dataset, test.frames, size)
        cameras = {**train_cameras, **{f"testing/{name}": c for name, c in test_cameras.items()}}
    check_cameras(stream, cameras)  # before any scoring
    return stream, cameras, test_cameras


def _online(args: argparse.Namespace, dataset: Path) -> dict[str, Any]:
    """online: the start model, then the testing videos streamed through the self-training loop.
    coldstart: no model; training and testing videos streamed in a seeded order from a cold start."""
    import tempfile

    from tqdm import tqdm

    from models.detector.export import save_detector
    from models.detector.motion import MotionBaseline
    from models.evaluation.jobs import (
        analysed_labels,
        frame_metrics,
        read_analysed,
        video_labels,
        write_scores_csv,
    )
    from models.evaluation.online import stream_online
    from models.evaluation.videos import score_videos
    from models.selftrain.trainer import SelfTrainer
    from workers.config import online_config

    settings = get_settings()
    config = online_config(settings, seed=args.seed)
    if args.streams:
        config = replace(config, detector=detector_config(args))
    height, width = settings.analysis.height, settings.analysis.width
    start_model = start_metadata = None
    training = None
    if args.mode == "online":
        start, training = _start_detector(args, dataset, keep_torch=True)
        start_model, start_metadata = start.model, start.info.metadata
        height, width = start.info.height, start.info.width
    test = read_analysed(dataset, "testing", height, width, analysis_fps=settings.analysis.fps)
    every_label = video_labels(dataset, test)
    test_frames, labels = test.frames, analysed_labels(test, every_label)
    stream, stream_cameras, test_cameras = _streamed_cameras(args, dataset, test, (height, width))
    streamed = test.videos + (list_videos(dataset, "training") if args.mode == "coldstart" else [])
    # what the fits afresh fit to: the flow its pixels and the analysed rate call for
    config = config.for_source(source_size(streamed), test.fps)

    def metrics_of(scores: dict[str, Any]) -> dict[str, float] | None:
        return frame_metrics(test, scores, every_label)

    report: dict[str, Any] = {"online": config.to_dict(), "training": training}
    with tempfile.TemporaryDirectory() as models_dir:
        trainer = SelfTrainer(
            config, Path(models_dir), "cpu", args.threads, model=start_model, metadata=start_metadata
        )
        if args.mode == "online":
            assert trainer.serving is not None
            _warn_without_view(args, trainer.serving)
            start_scores = score_videos(
                trainer.serving, test_frames, desc="start model", fps=test.fps, cameras=test_cameras
            )
            report["start_model"] = trainer.serving.info.version
            report["start_metrics"] = metrics_of(start_scores)
            _print_metrics("start:    ", report["start_metrics"])
            if args.start_scores_out:
                write_scores_csv(start_scores, Path(args.start_scores_out), test)
        cycles: list[dict[str, Any]] = []
        loop_started = time.monotonic()
        with tqdm(
            total=sum(len(f) for f in stream.values()), unit="frame", desc="streaming", dynamic_ncols=True
        ) as bar:
            fallback = MotionBaseline(height, width)
            streamed = stream_online(
                stream, trainer, fallback, cycles, bar.update, fps=test.fps, cameras=stream_cameras
            )
        report["stream_s"] = time.monotonic() - loop_started
        report["cycles"] = cycles
        if trainer.serving is None:
            raise ValueError(
                f"the stream was too short for a first model ({config.coldstart_frames} frames needed)"
            )
        final_scores = score_videos(
            trainer.serving, test_frames, desc="final model", fps=test.fps, cameras=test_cameras
        )
        report["final_model"] = trainer.serving.info.version
        report["final_metrics"] = metrics_of(final_scores)
        test_streamed = {name: streamed[name] for name in test_frames} if args.mode == "online" else None
        if test_streamed is not None:
            report["streamed_metrics"] = metrics_of(test_streamed)
            _print_metrics("streamed: ", report["streamed_metrics"])
        _print_metrics("final:    ", report["final_metrics"])
        accepted = sum(1 for c in cycles if c["accepted"])
        print(f"{len(cycles)} cycles, {accepted} models accepted; final model {trainer.serving.info.version}")
        if args.scores_out:
            write_scores_csv(test_streamed or final_scores, Path(args.scores_out), test)
        if args.final_scores_out:
            write_scores_csv(final_scores, Path(args.final_scores_out), test)
        if args.save_model and trainer.model is not None and trainer.metadata is not None:
            save_detector(trainer.model, trainer.metadata, Path(args.save_model))
        served = test_streamed or final_scores
        report["adaptive_threshold"] = trainer.alert_threshold()  # None: the consensus has not settled
        report["events"] = _alerts(args, dataset, served, labels, report["adaptive_threshold"], test)
    report["metrics"] = report.get("streamed_metrics") or report["final_metrics"]
    report["timings"] = {"frames": sum(len(f) for f in stream.values())}
    return report


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a detector on DATASET_DIR/testing (AUC, alerts, scores CSV, report)",
        description="Score every frame of DATASET_DIR/testing exactly as the service does and print the "
        "frame-level AUCs and alert quality when DATASET_DIR/labels.json exists. Without --model, a "
        "detector is first trained on each DATASET_DIR/training.",
    )
    parser.add_argument(
        "dataset",
        metavar="DATASET_DIR",
        nargs="+",
        help="one or more datasets, each evaluated in turn (several: output files get each one's name, "
        "and a table sums them up)",
    )
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="oneclass",
        help="oneclass: a fixed model; online: the self-training loop over the testing stream; coldstart: no model, no labels",
    )
    parser.add_argument("--model", metavar="PATH", help="score with these weights instead of training")
    parser.add_argument("--save-model", metavar="PATH", help="write the trained weights (.onnx or .pt)")
    parser.add_argument(
        "--camera",
        metavar="NAME",
        help="oneclass and online: score (and, online, retrain on) the footage as this camera of a model "
        "fitted to several cameras (its own view: normal speed, perspective, place map, statistics); "
        "default: as DATASET_DIR/cameras.json names each video's camera, else as the site",
    )
    parser.add_argument(
        "--scores-out", metavar="FILE.csv", help="write video,frame,score for every test frame"
    )
    parser.add_argument(
        "--start-scores-out", metavar="FILE.csv", help="online: the start model's scores, before any mining"
    )
    parser.add_argument(
        "--final-scores-out",
        metavar="FILE.csv",
        help="online/coldstart: every test frame rescored by the final model",
    )
    parser.add_argument(
        "--alerts-out",
        metavar="FILE.csv",
        help="write video,start_frame,end_frame,peak_score for every alert the service would raise",
    )
    parser.add_argument(
        "--report", metavar="FILE.json", help="write AUCs, event metrics, timings and machine info as JSON"
    )
    add_training_arguments(parser)
    parser.set_defaults(handler=run)
