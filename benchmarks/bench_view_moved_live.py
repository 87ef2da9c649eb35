"""One camera of a live site moved: a dataset's test videos replayed over real RTSP to a real `vigil up` with
self-training on, its cameras dealt the videos in blocks, the last camera playing its videos from a copy in
which the camera moved (benchmarks/site_changes.py). What the site's operator sees of it.

    python benchmarks/bench_view_moved_live.py DATASET_DIR --moved COPY_DIR --model MODEL.onnx [--cameras 4]
        [--settle 60] [--out R.json]

Measured, from the service's own records (the model registry in its Redis, GET /api/cameras, the scores
and alerts through the API): which model versions the retraining worker served and why, when (seconds
after the first frame, and how many of the moved camera's frames had been scored by the model before),
which cameras the served model scores without its place map, whether the cameras' endpoint says
`view_moved`, and each camera's alerts against the labels (event recall, alert precision, normal frames
under an alert) over the whole replay and after the silence. After the streams end, the service runs
`--settle` seconds more, so that a check due at their end is published.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from benchmarks.bench_live import service_env  # noqa: E402
from benchmarks.harness import write_report  # noqa: E402
from benchmarks.live_cameras import CameraFootage, write_footage  # noqa: E402
from benchmarks.live_metrics import CameraStream, camera_stream, live_events  # noqa: E402
from benchmarks.live_service import (  # noqa: E402
    published_versions,
    replayed,
    run_in_work_dir,
    served_by_camera,
)
from models.evaluation import datasets  # noqa: E402
from models.evaluation.jobs import machine_info  # noqa: E402
from workers.config import Settings  # noqa: E402

log = logging.getLogger("bench_view_moved_live")


def site_footage(args: argparse.Namespace, work: Path) -> list[CameraFootage]:
    """The dataset's test videos dealt to the cameras in blocks; the last camera's from the moved copy."""
    own = write_footage(args.dataset, args.cameras, "blocks", work / "own", False)
    moved = write_footage(args.moved, args.cameras, "blocks", work / "moved", False)
    if moved[-1].videos != own[-1].videos:
        raise SystemExit(f"{args.moved}: not a copy of {args.dataset} (other test videos)")
    return [*own[:-1], moved[-1]]


def camera_figures(
    stream: CameraStream, labels: dict[str, np.ndarray], fps: float, threshold: float, since: int
) -> dict[str, Any]:
    """A camera's alerts against the labels, and its normal frames under an alert: over the whole replay
    and from stream index `since` on."""
    flags = stream.footage.flags(labels)
    covered = np.zeros(len(flags), dtype=bool)
    for episode in stream.episodes:
        covered[episode.start_seq : episode.last_seq + 1] = True  # stream indices here
    normal = ~flags
    return {
        **live_events([stream], labels, fps, threshold),
        "normal_frames": int(normal.sum()),
        "normal_frames_under_alert": int((normal & covered).sum()),
        "normal_frames_after_silence": int(normal[since:].sum()),
        "normal_frames_under_alert_after_silence": int((normal & covered)[since:].sum()),
    }


def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    fps = datasets.dataset_fps(args.dataset)
    footage = site_footage(args, work)
    moved = footage[-1].camera
    lengths = {name: range(n) for f in footage for name, n in zip(f.videos, f.lengths, strict=True)}
    labels = datasets.load_labels(args.dataset, lengths)
    replay_s = max(item.frames for item in footage) / fps
    env = service_env(work, fps, replay_s) | {"VIGIL_RETRAIN__ENABLED": "true"}
    with replayed(args.model, footage, env, work, args.start_timeout, args.drain_timeout) as (
        vigil,
        progress,
        began,
    ):
        time.sleep(args.settle)
        versions = published_versions(vigil, began)
        listed = vigil.api.get("/api/cameras").raise_for_status().json()
        served = served_by_camera(vigil, footage, progress)
    streams = {item.camera: camera_stream(item, served[item.camera], None) for item in footage}
    silencing = next((v for v in versions if moved in v["place_silenced_cameras"]), None)
    # the first of the moved camera's frames the silencing model scored: how long the old map spoke
    first = next(
        (p for p in served[moved]["scores"] if silencing is not None and p["model"] == silencing["version"]),
        None,
    )
    since = streams[moved].index_of_seq.get(first["seq"]) if first is not None else None
    threshold = Settings().alerts.threshold
    return {
        "dataset": str(args.dataset),
        "moved_copy": str(args.moved),
        "model": str(args.model),
        "cameras": {item.camera: list(item.videos) for item in footage},
        "moved_camera": moved,
        "versions": versions,
        "found": {
            "version": silencing["version"] if silencing else None,
            "after_s": silencing["after_s"] if silencing else None,
            "moved_camera_frames_scored_before": since,
        },
        "api_view_moved": {camera["id"]: camera["view_moved"] for camera in listed},
        "alerts": {
            camera: camera_figures(
                stream, labels, fps, threshold, since if since is not None and camera == moved else 0
            )
            for camera, stream in streams.items()
        },
        "settings": {"threshold": threshold, "settle_s": args.settle},
        "machine": machine_info(),
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dataset", type=Path, metavar="DATASET_DIR", help="testing/ frames, labels.json")
    parser.add_argument("--moved", type=Path, required=True, help="a copy of it in which the camera moved")
    parser.add_argument("--model", type=Path, required=True, help="the detector vigil up serves")
    parser.add_argument("--cameras", type=int, default=4, help="cameras the test videos are dealt to")
    parser.add_argument("--settle", type=float, default=60.0, help="seconds the service runs on at the end")
    parser.add_argument("--start-timeout", type=float, default=180.0, help="seconds for the first frames")
    parser.add_argument("--drain-timeout", type=float, default=900.0, help="seconds to score the rest")
    parser.add_argument("--work", type=Path, help="keep clips, logs and data here (default: temporary)")
    parser.add_argument("--out", type=Path, help="report path (default benchmarks/results/...)")
    return parser.parse_args()


def main() -> int:
    args = parse_args()

    def measured(work: Path) -> int:
        report = measure(args, work)
        path = write_report(report, f"view-moved-live-{args.dataset.resolve().name}", args.out)
        log.info("found: %s; the API: %s; report %s", report["found"], report["api_view_moved"], path)
        return 0

    return run_in_work_dir("bench_view_moved_live", args.work, measured)


if __name__ == "__main__":
    sys.exit(main())
