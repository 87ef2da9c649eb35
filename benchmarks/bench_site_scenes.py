"""One model for a site whose cameras see different scenes: `vigil eval` of each scene's test footage under
its own scene's model, under one model fitted to every scene's training footage together (as
`vigil train --from-camera A,B` fits a site's cameras, and as a cold start fits them), and under the
other scene's model (a site fitted to one camera's footage serving another).

    python benchmarks/bench_site_scenes.py                       # Ped1 (development part) and Ped2
    python benchmarks/bench_site_scenes.py --own-model PED1.onnx PED2.onnx  # their own models given

Each scene is one camera of the site: the joined dataset names its videos <scene>-<video> (links to the
frames, nothing copied) and its cameras.json names each video's camera, its scene, so that the fit learns
each camera's own view; each scene's test footage is then scored as its camera (`vigil eval --camera`). Writes benchmarks/results/site-scenes-<machine>-<date>.json and prints a table
of micro AUC (causal, as served) and the alerts at the service's threshold.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from benchmarks.harness import run_eval, write_with_table  # noqa: E402
from models.evaluation.datasets import CAMERAS_FILE  # noqa: E402

DEFAULT_DATASETS = [PROJECT_ROOT.parent / "shared" / "datasets" / name for name in ("ped1", "ped2")]


def joined_site(datasets: list[Path], target: Path) -> Path:
    """A dataset whose training and testing videos are every scene's, named <scene>-<video> (symbolic
    links), with their labels and each video's camera, its scene (cameras.json)."""
    labels: dict[str, Any] = {"dataset": "one site: " + ", ".join(d.name for d in datasets), "videos": {}}
    cameras: dict[str, str] = {}
    for dataset in datasets:
        for split in ("training", "testing"):
            (target / split).mkdir(parents=True, exist_ok=True)
            for video in sorted((dataset / split).iterdir()):
                (target / split / f"{dataset.name}-{video.name}").symlink_to(video.resolve())
                cameras[f"{dataset.name}-{video.name}"] = dataset.name
        scene = json.loads((dataset / "labels.json").read_text())
        for name, video in scene["videos"].items():
            labels["videos"][f"{dataset.name}-{name}"] = video
    (target / "labels.json").write_text(json.dumps(labels, indent=1))
    (target / CAMERAS_FILE).write_text(json.dumps({"videos": cameras}, indent=1))
    return target


def normal_under_alert(dataset: Path, alerts_csv: Path) -> float:
    """The share of the dataset's normal test frames (labels.json) that lie under an open alert: what an
    operator sees of a model that does not know the view (every alert also covers a true event where each
    test video holds one, so precision alone does not show it)."""
    videos = json.loads((dataset / "labels.json").read_text())["videos"]
    normal = {name: np.ones(video["frames"], dtype=bool) for name, video in videos.items()}
    for name, video in videos.items():
        for start, end in video["abnormal"]:
            normal[name][start : end + 1] = False
    covered = {name: np.zeros(len(flags), dtype=bool) for name, flags in normal.items()}
    with alerts_csv.open() as rows:
        for alert in csv.DictReader(rows):
            covered[alert["video"]][int(alert["start_frame"]) : int(alert["end_frame"]) + 1] = True
    total = sum(int(flags.sum()) for flags in normal.values())
    return sum(int((normal[n] & covered[n]).sum()) for n in normal) / max(total, 1)


def evaluated(dataset: Path, work: Path, name: str, *arguments: str) -> dict[str, Any]:
    """`vigil eval` of the dataset's test footage: what the table shows of its report."""
    alerts = work / f"{name}.csv"
    report = run_eval(dataset, work, name, "--alerts-out", str(alerts), *arguments)
    return {
        "micro_auc": report["metrics"]["micro_auc"],
        "events": report["events"],
        "normal_frames_under_alert": normal_under_alert(dataset, alerts),
        "model_version": report["model_version"],
        "wall_s": report["process_wall_s"],
        "machine": report["machine"],
    }


def row(label: str, scenes: dict[str, dict[str, Any]]) -> str:
    cells = []
    for result in scenes.values():
        events = result["events"]
        cells.append(
            f"{result['micro_auc']:.4f}; recall {events['event_recall']:.2f}, precision "
            f"{events['alert_precision']:.2f}, {events['false_alerts_per_hour']:.1f} false alerts/h, "
            f"{100 * result['normal_frames_under_alert']:.0f}% of normal frames under an alert"
        )
    return f"| {label} | " + " | ".join(cells) + " |"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", type=Path, nargs=2, default=DEFAULT_DATASETS)
    parser.add_argument(
        "--own-model", type=Path, nargs=2, help="each dataset's own model, in order (default: fitted here)"
    )
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    datasets = [d.resolve() for d in args.dataset]
    if datasets[0].name == datasets[1].name:
        parser.error("the two scenes' folders must have different names: they name the joined videos")
    threads = ("--threads", str(args.threads))
    results: dict[str, Any] = {"datasets": [str(d) for d in datasets]}
    with tempfile.TemporaryDirectory() as tmp_dir:
        work = Path(tmp_dir)
        own: dict[str, Path] = {}
        results["own"] = {}
        for index, dataset in enumerate(datasets):
            given = args.own_model[index].resolve() if args.own_model else None
            own[dataset.name] = given or work / f"{dataset.name}.onnx"
            fit = ("--model", str(given)) if given else ("--save-model", str(own[dataset.name]))
            results["own"][dataset.name] = evaluated(dataset, work, f"own-{dataset.name}", *fit, *threads)
        site = joined_site(datasets, work / "site")
        site_model = work / "site.onnx"
        results["site_pooled"] = evaluated(site, work, "site", "--save-model", str(site_model), *threads)
        # each scene's test footage as its camera: in the camera's own view (models/detector/views.py)
        results["site"] = {
            d.name: evaluated(
                d, work, f"site-on-{d.name}", "--model", str(site_model), "--camera", d.name, *threads
            )
            for d in datasets
        }
        results["other"] = {}
        for dataset in datasets:
            other = datasets[1 - datasets.index(dataset)]
            report = evaluated(
                dataset, work, f"{other.name}-on-{dataset.name}", "--model", str(own[other.name]), *threads
            )
            results["other"][dataset.name] = {**report, "model_of": other.name}
    names = [d.name for d in datasets]
    rows = [
        "| model serving the camera | " + " | ".join(names) + " |",
        "| --- | " + " | ".join("---" for _ in names) + " |",
        row("its own scene's", results["own"]),
        row("one model fitted to every scene's footage, each camera in its own view", results["site"]),
        row("the other scene's", results["other"]),
    ]
    write_with_table(results, "site-scenes", args.out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
