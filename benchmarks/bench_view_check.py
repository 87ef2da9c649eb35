"""The view check of a site whose cameras share one model, when one of them moved: the retraining worker
joins the cameras' newest frames into one window (each camera its share), and the place check asks
whether even the window's quietest quarter moves where the model's place map says nothing does
(models/selftrain/validation.py). Over the whole joined window one moved camera of four is a quarter of
the frames, which the first quartile never sees; each camera's own frames are checked alone as well.

Each stream (a dataset's testing videos as they are, and copies of them as if the camera moved,
benchmarks/site_changes.py) is scored once by the model, every `--stride`-th frame; joined windows are then
drawn at random: `cameras - 1` blocks of the scene as it is and one block of a copy (or of the scene as it
is: a site where nothing moved), each block `per-camera` consecutive frames. `--other-scene` adds a
camera of another scene, one the model was never fitted to.

    python benchmarks/bench_view_check.py --model M.onnx --dataset ../shared/datasets/ped2

Writes benchmarks/results/view-check-<machine>-<date>.json and prints a table: for each copy, the share of
joined windows in which the check over the whole window and the check that adds each camera's own frames
find the view moved. And a second: how far from normal the model finds the quietest quarter of each
stream's first `--first-frames` frames (validation.quiet_quarter_z, the place map as fitted), which decides
whether a cycle takes the model for one that does not know the site (`OnlineConfig.rebase_z`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from benchmarks.harness import write_with_table  # noqa: E402
from benchmarks.site_changes import SITE_CHANGES, changed_copy  # noqa: E402
from models.detector.base import Detector  # noqa: E402
from models.detector.runtime import load_detector  # noqa: E402
from models.evaluation import datasets  # noqa: E402
from models.selftrain.config import OnlineConfig, Window  # noqa: E402
from models.selftrain.validation import (  # noqa: E402
    quiet_place_z,
    quiet_place_z_by_camera,
    quiet_quarter_z,
    sampled_patch_scores,
)

DEFAULT_DATASET = PROJECT_ROOT.parent / "shared" / "datasets" / "ped2"
DEFAULT_CHANGES = ("site_change", "site_change_brighter", "knocked", "upside_down")


def stream_patch(detector: Detector, dataset: Path, stride: int) -> np.ndarray:
    """float32 [N, S]: the patch scores of every `stride`-th frame of the testing videos, in order."""
    frames, segments = [], []
    for index, video in enumerate(datasets.list_videos(dataset, "testing")):
        frames.append(datasets.read_video(video, detector.info.height, detector.info.width))
        segments.append(np.full(len(frames[-1]), index))
    return sampled_patch_scores(detector, Window(np.concatenate(frames), np.concatenate(segments)), stride)


def joined_checks(
    detector: Detector,
    scene: np.ndarray,
    moved: np.ndarray,
    cameras: int,
    samples: int,
    trials: int,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """The place check's first quartile (z over the gate) of `trials` joined windows: over the whole
    window, and the largest of that and each camera's own."""
    whole, by_camera = np.empty(trials), np.empty(trials)
    for trial in range(trials):
        blocks = [scene] * (cameras - 1) + [moved]
        starts = [rng.integers(0, len(block) - samples + 1) for block in blocks]
        patch = np.concatenate([block[s : s + samples] for block, s in zip(blocks, starts, strict=True)])
        owners = np.repeat(np.arange(cameras), samples)
        whole[trial] = quiet_place_z(detector, patch)
        by_camera[trial] = max([whole[trial], *quiet_place_z_by_camera(detector, patch, owners).values()])
    return {"whole": whole, "by_camera": by_camera}


def summary(values: np.ndarray, threshold: float) -> dict[str, float]:
    return {
        "found": round(float(np.mean(values > threshold)), 3),
        "min": round(float(values.min()), 2),
        "median": round(float(np.median(values)), 2),
        "max": round(float(values.max()), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True, help="a model with a place stream")
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--changes", nargs="*", choices=sorted(SITE_CHANGES), default=list(DEFAULT_CHANGES))
    parser.add_argument(
        "--other-scene",
        type=Path,
        nargs="*",
        default=[],
        help="datasets of other scenes whose testing videos are a camera the model was never fitted to",
    )
    parser.add_argument("--cameras", nargs="+", type=int, default=[2, 4])
    parser.add_argument(
        "--per-camera", nargs="+", type=int, default=[200, 450], help="frames of each camera in a window"
    )
    parser.add_argument(
        "--first-frames",
        nargs="+",
        type=int,
        default=[600, 1200, 1800],
        help="the quietest quarter's z over each stream's first this many frames",
    )
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    detector = load_detector(args.model, threads=args.threads)
    if "place" not in detector.info.streams:
        parser.error(f"{args.model}: the model has no place stream, which the view check reads")
    config = OnlineConfig()
    stride, threshold = config.rebase_stride, config.moved_place_z
    rng = np.random.default_rng(args.seed)
    scene = stream_patch(detector, args.dataset, stride)
    results: dict[str, Any] = {
        "model": str(args.model),
        "dataset": str(args.dataset),
        "stride": stride,
        "moved_place_z": threshold,
        "trials": args.trials,
        "streams": {},
    }
    rows = [
        "| moved camera | cameras | frames each | found: whole window | found: each camera too |",
        "| --- | --- | --- | --- | --- |",
    ]
    with tempfile.TemporaryDirectory() as tmp_dir:
        streams = {"none (the scene as it is)": scene}
        for name in args.changes:
            copy = changed_copy(args.dataset, Path(tmp_dir) / name, SITE_CHANGES[name])
            streams[name] = stream_patch(detector, copy, stride)
    for other in args.other_scene:
        streams[f"another scene: {other.resolve().name}"] = stream_patch(detector, other, stride)
    for name, moved in streams.items():
        results["streams"][name] = {}
        for cameras in args.cameras:
            for frames in args.per_camera:
                checks = joined_checks(detector, scene, moved, cameras, frames // stride, args.trials, rng)
                found = {key: summary(values, threshold) for key, values in checks.items()}
                results["streams"][name][f"{cameras} cameras, {frames} frames each"] = found
                rows.append(
                    f"| {name} | {cameras} | {frames} | {found['whole']['found']:.2f} "
                    f"(median {found['whole']['median']}) | {found['by_camera']['found']:.2f} "
                    f"(median {found['by_camera']['median']}) |"
                )
    rows += [
        "",
        "| stream | " + " | ".join(f"quiet quarter z, first {n} frames" for n in args.first_frames) + " |",
        "| --- |" + " --- |" * len(args.first_frames),
    ]
    results["rebase_z"], results["quiet_quarter_z"] = config.rebase_z, {}
    for name, patch in streams.items():
        found = {
            n: round(quiet_quarter_z(detector, patch[: max(1, n // stride)]), 2) for n in args.first_frames
        }
        results["quiet_quarter_z"][name] = found
        rows.append(f"| {name} | " + " | ".join(str(z) for z in found.values()) + " |")
    write_with_table(results, "view-check", args.out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
