"""A moved camera's model registered to its view: `vigil eval --mode oneclass` on copies whose testing
frames look as if the camera moved (benchmarks/site_changes.py), with the model as fitted and with its
maps of the view carried by the move found on the first 200 testing frames (models/selftrain/
registration.py, as the retraining worker's view check finds it with VIGIL_RETRAIN__REGISTER_MOVED_VIEW).

    python benchmarks/bench_registration.py --model M.pt --dataset ../shared/datasets/ped2
    python benchmarks/bench_registration.py --model M.pt --changes knocked upside_down

Writes benchmarks/results/registration-<machine>-<date>.json and prints a summary.
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

from benchmarks.harness import run_eval, write_with_table  # noqa: E402
from benchmarks.site_changes import SITE_CHANGES, changed_copy  # noqa: E402
from models.detector.export import save_detector  # noqa: E402
from models.detector.runtime import TorchDetector, load_detector  # noqa: E402
from models.evaluation import datasets  # noqa: E402
from models.selftrain.config import Window  # noqa: E402
from models.selftrain.registration import BACKGROUND_FRAMES, registered_model, view_move  # noqa: E402

DEFAULT_DATASET = PROJECT_ROOT.parent / "shared" / "datasets" / "ped2"
DEFAULT_CHANGES = ("site_change", "site_change_brighter", "knocked", "upside_down")


def first_frames(dataset: Path, height: int, width: int, count: int) -> np.ndarray:
    """uint8 [count, H, W]: the testing stream's first `count` frames, videos in order."""
    frames: list[np.ndarray] = []
    for video in datasets.list_videos(dataset, "testing"):
        frames.append(datasets.read_video(video, height, width))
        if sum(len(f) for f in frames) >= count:
            break
    return np.concatenate(frames)[:count]


def registered_copy(detector: TorchDetector, dataset: Path, out: Path) -> dict[str, Any] | None:
    """The move found on `dataset`'s first testing frames (None: it does not register) and, where found,
    the model registered to it written to `out`."""
    model = detector.model
    frames = first_frames(dataset, model.config.height, model.config.width, BACKGROUND_FRAMES)
    move = view_move(model, Window(frames, np.zeros(len(frames), dtype=int)))
    if move is None:
        return None
    save_detector(*registered_model(model, detector.info.metadata, move.warp), out)
    return move.report()


def figures(report: dict[str, Any]) -> dict[str, Any]:
    return {**report["metrics"], "events": report.get("events"), "wall_s": report["process_wall_s"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", type=Path, required=True, help="the model's .pt weights (anchor clips kept)"
    )
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--changes", nargs="+", choices=sorted(SITE_CHANGES), default=list(DEFAULT_CHANGES))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    detector = load_detector(args.model, threads=args.threads)
    if not isinstance(detector, TorchDetector) or detector.model.anchors is None:
        parser.error(f"{args.model}: .pt weights with their anchor clips are needed")
    results: dict[str, Any] = {"model": str(args.model), "dataset": str(args.dataset), "changes": {}}
    rows = ["| copy | move found | as fitted | registered |", "| --- | --- | --- | --- |"]
    with tempfile.TemporaryDirectory() as tmp_dir:
        work = Path(tmp_dir)
        for name in args.changes:
            copy = changed_copy(args.dataset, work / name, SITE_CHANGES[name])
            threads = ("--threads", str(args.threads))
            fitted = figures(run_eval(copy, work, f"{name}-fitted", "--model", str(args.model), *threads))
            registered_path = work / f"{name}-registered.pt"
            move = registered_copy(detector, copy, registered_path)
            registered = None
            if move is not None:
                report = run_eval(copy, work, f"{name}-registered", "--model", str(registered_path), *threads)
                registered = figures(report)
            results["changes"][name] = {"move": move, "fitted": fitted, "registered": registered}
            after = f"{registered['micro_auc']:.4f}" if registered else "-"
            rows.append(f"| {name} | {move or 'none'} | {fitted['micro_auc']:.4f} | {after} |")
    write_with_table(results, "registration", args.out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
