"""Several cameras that see the same scene: does keeping each camera's own view (models/detector/views.py)
cost them anything? Each view is fitted on that camera's share of the footage only, so a site whose cameras
all film one scene could pay for the views with noisier per-camera maps and statistics.

    python benchmarks/bench_same_scene.py                    # Ped1 (development part) and Ped2, two cameras
    python benchmarks/bench_same_scene.py --cameras 3 --own-model PED1.onnx PED2.onnx

Each scene's training and test videos are dealt in turn to CAMERAS cameras of that scene (a dataset of
symbolic links whose cameras.json names each video's camera; nothing copied). The fit to it keeps each
camera's view, and `vigil eval` scores each test video as its camera. The scene's own model (one view,
fitted to all of its footage) is evaluated on the same test videos. Writes
benchmarks/results/same-scene-<machine>-<date>.json and prints a table of micro AUC (causal, as served) and
the alerts at the service's threshold.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from benchmarks.bench_site_scenes import DEFAULT_DATASETS, evaluated, row  # noqa: E402
from benchmarks.harness import write_with_table  # noqa: E402
from models.evaluation.datasets import CAMERAS_FILE  # noqa: E402


def dealt_cameras(dataset: Path, target: Path, cameras: int) -> Path:
    """A dataset of `dataset`'s videos whose cameras.json deals each split's videos in turn to `cameras`
    cameras named <scene>-1 ... (training videos renamed train-<video>: the file names videos of both
    splits in one namespace)."""
    named: dict[str, str] = {}
    for split, prefix in (("training", "train-"), ("testing", "")):
        (target / split).mkdir(parents=True)
        for index, video in enumerate(sorted((dataset / split).iterdir())):
            (target / split / f"{prefix}{video.name}").symlink_to(video.resolve())
            named[f"{prefix}{video.name}"] = f"{dataset.name}-{index % cameras + 1}"
    (target / "labels.json").symlink_to((dataset / "labels.json").resolve())
    (target / CAMERAS_FILE).write_text(json.dumps({"videos": named}, indent=1))
    return target


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", type=Path, nargs="+", default=DEFAULT_DATASETS)
    parser.add_argument("--cameras", type=int, default=2, help="cameras each scene is dealt to (default 2)")
    parser.add_argument(
        "--own-model", type=Path, nargs="+", help="each dataset's own model, in order (default: fitted here)"
    )
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    datasets = [d.resolve() for d in args.dataset]
    if args.own_model and len(args.own_model) != len(datasets):
        parser.error("--own-model takes one model per dataset")
    if args.cameras < 2:
        parser.error("--cameras must be at least 2")
    threads = ("--threads", str(args.threads))
    results: dict[str, Any] = {"datasets": [str(d) for d in datasets], "cameras": args.cameras}
    results["own"], results["views"] = {}, {}
    with tempfile.TemporaryDirectory() as tmp_dir:
        work = Path(tmp_dir)
        for index, dataset in enumerate(datasets):
            given = args.own_model[index].resolve() if args.own_model else None
            fit = ("--model", str(given)) if given else ("--save-model", str(work / f"{dataset.name}.onnx"))
            results["own"][dataset.name] = evaluated(dataset, work, f"own-{dataset.name}", *fit, *threads)
            dealt = dealt_cameras(dataset, work / f"{dataset.name}-dealt", args.cameras)
            results["views"][dataset.name] = evaluated(dealt, work, f"views-{dataset.name}", *threads)
    names = [d.name for d in datasets]
    rows = [
        "| model serving the scene's cameras | " + " | ".join(names) + " |",
        "| --- | " + " | ".join("---" for _ in names) + " |",
        row("the scene's own model, one view", results["own"]),
        row(f"fitted to {args.cameras} cameras of the scene, each in its own view", results["views"]),
    ]
    write_with_table(results, "same-scene", args.out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
