"""Held-out check of the detector: `vigil eval` one-class on views that no constant was chosen on.

Every constant of the detector was chosen on UCSD Ped1's development part and Ped2 as they are. Here each
dataset is copied as other cameras would see it, training and testing frames alike (a new site fits its
own model): mounted upside down (far places at the bottom of the view, the perspective reversed) and
re-lit, a camera of half the resolution, moved and brighter, with a noisier sensor, a camera at half
the frame rate, and a camera that sways. The views were fixed before any of them was scored. All copies are evaluated in one `vigil eval` run.

    python benchmarks/bench_heldout.py                     # Ped1 (development part) and Ped2
    python benchmarks/bench_heldout.py --with-unchanged    # and the datasets as they are, for reference

Writes benchmarks/results/heldout-<machine>-<date>.json and prints the table of `vigil eval`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from benchmarks.harness import EVAL_RUNNER, write_report  # noqa: E402
from benchmarks.site_changes import UNCHANGED, changed_copy  # noqa: E402

DEFAULT_DATASETS = [PROJECT_ROOT.parent / "shared" / "datasets" / name for name in ("ped1", "ped2")]
HELD_OUT_VIEWS = {
    "upside-down": {**UNCHANGED, "angle": 180.0, "gamma": 0.8, "noise_sigma": 2.0, "seed": 2},
    "half-resolution": {
        **UNCHANGED,
        "scale": 0.5,
        "zoom": 1.05,
        "shift_x": 0.02,
        "gamma": 1.3,
        "noise_sigma": 3.0,
        "seed": 3,
    },
    # a camera at half the frame rate (5 frames/s where the source has 10), with its own sensor noise
    "half-frame-rate": {**UNCHANGED, "frame_step": 2, "noise_sigma": 2.0, "seed": 4},
    # a camera that sways (wind on its pole): each frame shifted at random, 1.5 px (sigma) at the source's size
    "swaying": {**UNCHANGED, "shake_px": 1.5, "noise_sigma": 2.0, "seed": 6},
}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", type=Path, nargs="+", default=DEFAULT_DATASETS)
    parser.add_argument("--views", nargs="+", choices=list(HELD_OUT_VIEWS), default=list(HELD_OUT_VIEWS))
    parser.add_argument("--with-unchanged", action="store_true", help="evaluate the datasets as they are too")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results: dict[str, Any] = {
        "views": {v: HELD_OUT_VIEWS[v] for v in args.views},
        "load_average_1min_at_start": os.getloadavg()[0],
    }
    with tempfile.TemporaryDirectory() as tmp_dir:
        work = Path(tmp_dir)
        copies = list(args.dataset) if args.with_unchanged else []
        for dataset in args.dataset:
            for view in args.views:
                target = work / f"{dataset.resolve().name}-{view}"
                print(f"writing {target.name}", flush=True)
                copies.append(changed_copy(dataset, target, HELD_OUT_VIEWS[view], ("training", "testing")))
        report = work / "report.json"
        command = [
            sys.executable,
            "-c",
            EVAL_RUNNER,
            "eval",
            *map(str, copies),
            "--threads",
            str(args.threads),
        ]
        started = time.perf_counter()
        subprocess.run([*command, "--report", str(report)], check=True, cwd=PROJECT_ROOT)
        results["wall_s"] = time.perf_counter() - started
        figures = json.loads(report.read_text())
    results["eval"] = figures["datasets"] if "datasets" in figures else {copies[0].name: figures}
    results["machine"] = figures["machine"]
    results["load_average_1min_at_end"] = os.getloadavg()[0]
    out = write_report(results, "heldout", args.out)
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
