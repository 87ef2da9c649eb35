"""Storage per camera: what each kind of stored data costs in Redis, measured, and the budget at the defaults.

    python benchmarks/bench_storage.py [--seconds 60] [--videos 01 04] [--dataset ../shared/datasets/ped2]

Runs an embedded Redis, the ingest worker on real footage (each test video of the dataset a looping
camera, in real time at the default analysis settings) and an inference worker (the served detector, else
the motion baseline), then measures every key with MEMORY USAGE as the retention sweep does
(workers/store/retention.py). Bytes per entry are the measured bytes of a kind over its entries; the
budget multiplies them by what the default spans keep. Writes benchmarks/results/storage-<machine>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from workers.bus import keys, schemas  # noqa: E402  (after the path setup)
from workers.bus.connection import EmbeddedRedis, connect  # noqa: E402
from workers.config import Settings  # noqa: E402
from workers.inference.worker import InferenceWorker  # noqa: E402
from workers.ingest.worker import IngestWorker  # noqa: E402
from workers.proc.process import WorkerProcess  # noqa: E402
from workers.store import retention  # noqa: E402
from workers.store.cameras import list_cameras, put_camera  # noqa: E402

RESULTS = PROJECT_ROOT / "benchmarks" / "results"
DEFAULT_DATASET = PROJECT_ROOT.parent / "shared" / "datasets" / "ped2"


def entries(client: Any, camera: str) -> dict[str, int]:
    """How many entries of each kind the camera holds (stream lengths, keys)."""
    counts = {
        "frames": client.xlen(keys.frames_stream(camera)),
        "scores": client.xlen(keys.scores_stream(camera)),
        "display": client.xlen(keys.display_stream(camera)),
        "snapshot": int(client.exists(keys.snapshot_key(camera))),
        "error_maps": 0,
        "heat": 0,
    }
    for raw in client.scan_iter(match=f"{keys.camera_prefix(camera)}:*", count=1000):
        parsed = keys.parse_camera_key(raw.decode())
        kind = retention.CAMERA_KINDS.get(parsed[1]) if parsed else None
        if kind in ("error_maps", "heat"):
            counts[kind] += 1
    return counts


def budget(per_entry: dict[str, float], error_map_share: float, settings: Settings) -> dict[str, float]:
    """MB per camera at the default spans, 10 fps: what each kind holds once its span is full."""
    analysis, spans = settings.analysis, settings.retention
    frames = analysis.buffer_frames(analysis.fps)
    kept = {
        "frames": frames,
        "scores": frames,
        "display": spans.display_s / analysis.display_interval_s,
        "snapshot": 1,
        # error maps are written for frames near or over the threshold: the share measured here
        "error_maps": error_map_share * analysis.fps * spans.error_maps_s,
    }
    return {
        kind: round(per_entry[kind] * count / 1e6, 2) for kind, count in kept.items() if kind in per_entry
    }


def run(seconds: float, videos: list[Path]) -> dict[str, Any]:
    """Per camera: bytes, entries and bytes per entry of each kind; and the sweep's duration."""
    with tempfile.TemporaryDirectory(prefix="vigil-storage-") as tmp, EmbeddedRedis(Path(tmp)) as server:
        settings = Settings(redis_url=server.url, data_dir=Path(tmp))
        client = connect(server.url)
        for video in videos:
            put_camera(client, schemas.CameraConfig(id=f"v{video.name}", source=str(video), loop=True))
        workers: list[WorkerProcess] = [
            IngestWorker(settings, server.url),
            InferenceWorker(settings, server.url),
        ]
        threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
        for thread in threads:
            thread.start()
        time.sleep(seconds)
        for worker in workers:
            worker.stop()
        for thread in threads:
            thread.join(30)
        started = time.perf_counter()
        sweep = retention.sweep(client, settings, list_cameras(client), time.time())
        sweep_s = time.perf_counter() - started
        report = sweep.storage
        cameras = {}
        for video in videos:
            camera = f"v{video.name}"
            sizes, counts = report.cameras.get(camera, {}), entries(client, camera)
            per_entry = {k: sizes[k] / counts[k] for k in counts if counts[k] and sizes.get(k)}
            cameras[camera] = {
                "bytes": sizes,
                "entries": counts,
                "bytes_per_entry": {k: round(v) for k, v in per_entry.items()},
                "error_map_share": round(counts["error_maps"] / max(counts["scores"], 1), 3),
            }
        cameras["sweep_seconds"] = round(sweep_s, 4)  # the whole retention sweep over the site
        client.close()
    return cameras


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--videos", nargs="+", default=["01", "04"])
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--out", type=Path, default=RESULTS / "storage-vm-2026-12-06.json")
    args = parser.parse_args()
    videos = [args.dataset / "testing" / name for name in args.videos]
    cameras = run(args.seconds, videos)
    sweep_seconds = cameras.pop("sweep_seconds")
    settings = Settings()
    per_entry = {
        kind: max(c["bytes_per_entry"].get(kind, 0) for c in cameras.values())
        for kind in ("frames", "scores", "display", "snapshot", "error_maps")
    }
    share = max(c["error_map_share"] for c in cameras.values())
    result = {
        "benchmark": "storage",
        "date": dt.date.today().isoformat(),
        "machine": platform.processor() or platform.machine(),
        "seconds": args.seconds,
        "videos": [str(v) for v in videos],
        "cameras": cameras,
        "bytes_per_entry_max": per_entry,
        "budget_mb_per_camera_at_defaults": budget(per_entry, share, settings),
        "heat_mb_per_camera_per_day_at_most": round(
            max(c["bytes_per_entry"].get("heat", 0) for c in cameras.values()) * 1440 / 1e6, 2
        ),
        "sweep_seconds": sweep_seconds,
        "defaults": {
            "fps": settings.analysis.fps,
            "buffer_seconds": settings.analysis.buffer_seconds,
            "display_s": settings.retention.display_s,
            "display_interval_s": settings.analysis.display_interval_s,
            "error_maps_s": settings.retention.error_maps_s,
            "error_map_share": share,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["budget_mb_per_camera_at_defaults"], indent=2))


if __name__ == "__main__":
    main()
