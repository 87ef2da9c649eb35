"""Frame -> alert latency: how long after a frame is captured its score is written and, for the frame that
opens an alert, the alert event reaches a reader of the event stream.

For each number of cameras (1, 4, 16 by default) and each detector (the motion baseline, and the model given
with --model), an embedded Redis and a real inference worker process (`vigil infer`) run while frames are
written at real rate (10 fps per camera by default) the way the ingest worker writes them: a synthetic
scene where a bright object crosses the view for 2 s every 6 s, so alerts open and close all along.

    python benchmarks/bench_latency.py                               # motion baseline, 1/4/16 cameras, 30 s each
    python benchmarks/bench_latency.py --model data/models/ped2-default.onnx

Writes benchmarks/results/latency-<machine>.json (figures + machine info) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import heapq
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import redis
from tqdm import tqdm

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from models.evaluation.jobs import machine_info  # noqa: E402
from workers.bus import keys, schemas  # noqa: E402
from workers.bus.connection import EmbeddedRedis, connect  # noqa: E402

RESULTS = PROJECT_ROOT / "benchmarks" / "results"
TARGET_P95_MS = 250.0
WIDTH, HEIGHT = 360, 240  # the default analysis frame size
CYCLE_S, ANOMALY_FROM_S, ANOMALY_TO_S = 6.0, 3.0, 5.0  # an object crosses the view in [3 s, 5 s) of every 6 s
BACKGROUNDS = 16  # noisy backgrounds cycled through, so that no two consecutive frames are identical
WORKER_START_TIMEOUT_S = 120.0
DRAIN_TIMEOUT_S = 15.0


@dataclass
class Capture:
    """Capture times of the frames written, by (camera, seq)."""

    ts: dict[tuple[str, int], float] = field(default_factory=dict)
    written: int = 0
    behind_s: float = 0.0  # the most the writer fell behind its schedule


def percentiles(values_s: list[float]) -> dict[str, float | int | None]:
    if not values_s:
        return {"count": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    ms = np.asarray(values_s) * 1000.0
    return {
        "count": len(values_s),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p95_ms": round(float(np.percentile(ms, 95)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "max_ms": round(float(ms.max()), 1),
    }


class SceneFrames:
    """Synthetic grayscale frames of one camera: noise over a floor, plus a moving object in anomaly phases."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        base = np.full((HEIGHT, WIDTH), 90, dtype=np.float32)
        base[HEIGHT // 2 :] = 130
        self.backgrounds = [
            np.clip(base + rng.normal(0, 2, base.shape), 0, 255).astype(np.uint8) for _ in range(BACKGROUNDS)
        ]
        self.phase_s = float(rng.uniform(0, CYCLE_S))

    def frame(self, seq: int, elapsed_s: float, warmup_s: float) -> np.ndarray:
        gray = self.backgrounds[seq % BACKGROUNDS]
        in_cycle = (elapsed_s - warmup_s + self.phase_s) % CYCLE_S
        if elapsed_s < warmup_s or not ANOMALY_FROM_S <= in_cycle < ANOMALY_TO_S:
            return gray
        gray = gray.copy()
        x = int((in_cycle - ANOMALY_FROM_S) / (ANOMALY_TO_S - ANOMALY_FROM_S) * (WIDTH - 24))
        gray[40:70, x : x + 24] = 250
        return gray


def write_frames(
    client: redis.Redis, cameras: list[str], fps: float, seconds: float, warmup_s: float, capture: Capture
) -> None:
    """Each camera's frames at `fps`, cameras evenly staggered; ts is taken just before the write, as ingest does."""
    scenes = {camera: SceneFrames(seed) for seed, camera in enumerate(cameras)}
    maxlen = round(fps * 300)
    started = time.monotonic()
    schedule = [(index / fps / len(cameras), camera, 0) for index, camera in enumerate(cameras)]
    heapq.heapify(schedule)
    while schedule:
        due, camera, seq = heapq.heappop(schedule)
        if due > seconds:
            continue
        delay = started + due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            capture.behind_s = max(capture.behind_s, -delay)
        gray = scenes[camera].frame(seq, due, warmup_s)
        ts = time.time()
        message = schemas.FrameMessage(
            camera=camera, seq=seq, ts=ts, session=0, width=WIDTH, height=HEIGHT, gray=gray.tobytes()
        )
        client.xadd(keys.frames_stream(camera), message.to_fields(), maxlen=maxlen, approximate=True)
        capture.ts[(camera, seq)] = ts
        capture.written += 1
        heapq.heappush(schedule, (due + 1.0 / fps, camera, seq + 1))


class AlertEventReader:
    """Reads the alert event stream on its own connection and notes when each `new` event arrives."""

    def __init__(self, redis_url: str) -> None:
        self.client = connect(redis_url)
        self.arrivals: list[tuple[float, schemas.Alert]] = []
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="alert-reader", daemon=True)

    def _run(self) -> None:
        last_id = "0-0"
        while not self.stop_event.is_set():
            reply = self.client.xread({keys.ALERT_EVENTS: last_id}, block=200, count=100)
            arrived = time.time()
            for _, entries in reply or []:
                for entry_id, fields in entries:
                    last_id = entry_id
                    event = schemas.AlertEvent.from_fields(fields)
                    if event.type == "new":
                        self.arrivals.append((arrived, event.parsed_alert()))

    def __enter__(self) -> AlertEventReader:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join(5)
        self.client.close()


def start_worker(redis_url: str, model: Path | None, fps: float, log_path: Path) -> subprocess.Popen[bytes]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("VIGIL_")}
    env |= {
        "VIGIL_REDIS_URL": redis_url,
        "VIGIL_LOG_LEVEL": "WARNING",
        "VIGIL_HEARTBEAT_S": "0.5",
        "VIGIL_ANALYSIS__FPS": str(fps),
        "VIGIL_ANALYSIS__WIDTH": str(WIDTH),
        "VIGIL_ANALYSIS__HEIGHT": str(HEIGHT),
    }
    command = [sys.executable, "-m", "service.cli", "infer"]
    if model is not None:
        command += ["--model", str(model.resolve())]
    with log_path.open("wb") as log_file:
        return subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_for_owner(
    client: redis.Redis, cameras: int, process: subprocess.Popen[bytes], log_path: Path
) -> str:
    """The served model version, once the worker's heartbeat says it owns every camera."""
    deadline = time.monotonic() + WORKER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the inference worker exited: {log_path.read_text()[-2000:]}")
        for raw in client.hgetall(keys.WORKERS).values():
            beat = schemas.WorkerHeartbeat.model_validate_json(raw)
            if beat.role == "inference" and len(beat.info.get("cameras", [])) == cameras:
                return str(beat.info.get("model"))
        time.sleep(0.2)
    raise RuntimeError(
        f"the inference worker did not take {cameras} cameras in {WORKER_START_TIMEOUT_S:.0f} s"
    )


def score_latencies(
    client: redis.Redis, cameras: list[str], since_ts: float, until_ts: float
) -> tuple[list[float], int, int]:
    """Capture -> score written (s) of the frames captured from `since_ts`; scores written in all; and scores
    written between `since_ts` and `until_ts` (the worker's throughput while frames were coming in)."""
    latencies, total, in_window = [], 0, 0
    for camera in cameras:
        for entry_id, fields in client.xrange(keys.scores_stream(camera)):
            total += 1
            written_s = int(entry_id.split(b"-")[0]) / 1000.0  # stream ids are the Redis server's time in ms
            in_window += since_ts <= written_s <= until_ts
            ts = float(fields[b"ts"])
            if ts >= since_ts:
                latencies.append(written_s - ts)
    return latencies, total, in_window


def run_setting(
    redis_url: str, cameras: int, args: argparse.Namespace, model: Path | None, work: Path
) -> dict[str, Any]:
    client = connect(redis_url)
    client.flushall()
    camera_ids = [f"cam{index + 1:02d}" for index in range(cameras)]
    for camera in camera_ids:
        config = schemas.CameraConfig(id=camera, source="bench://synthetic", fps=args.fps)
        client.hset(keys.CAMERAS, camera, config.model_dump_json())
    log_path = work / f"infer-{cameras}-{'model' if model else 'baseline'}.log"
    process = start_worker(redis_url, model, args.fps, log_path)
    try:
        version = wait_for_owner(client, cameras, process, log_path)
        capture = Capture()
        with AlertEventReader(redis_url) as reader:
            started = time.time()
            write_frames(client, camera_ids, args.fps, args.warmup + args.seconds, args.warmup, capture)
            writing_ended = time.time()
            deadline = time.monotonic() + DRAIN_TIMEOUT_S
            while sum(client.xlen(keys.scores_stream(c)) for c in camera_ids) < capture.written:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            time.sleep(0.5)  # the last alert events
        measured_from = started + args.warmup
        scores, scored, scored_in_window = score_latencies(client, camera_ids, measured_from, writing_ended)
        alerts = []
        for arrived, alert in reader.arrivals:
            ts = capture.ts.get((alert.camera, alert.last_seq))
            if ts is not None and ts >= measured_from:
                alerts.append(arrived - ts)
    finally:
        stop_worker(process)
        client.close()
    offered_fps = cameras * args.fps
    scored_fps = scored_in_window / max(writing_ended - measured_from, 1e-9)
    return {
        "model": version,
        "model_file": model.name if model else None,
        "cameras": cameras,
        "fps_per_camera": args.fps,
        "seconds": args.seconds,
        "frames_written": capture.written,
        "frames_scored": scored,
        "scored_fps": round(scored_fps, 1),
        # below the offered rate the backlog, and with it the latency, grows for as long as the run lasts
        "keeps_up": scored == capture.written and scored_fps >= 0.95 * offered_fps,
        "writer_behind_max_ms": round(capture.behind_s * 1000.0, 1),
        "frame_to_score": percentiles(scores),
        "frame_to_alert": percentiles(alerts),
    }


def markdown_table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| detector | cameras | fps/camera | scored fps | frame->score p50 / p95 (ms) "
        "| frame->alert p50 / p95 (ms) | alerts |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]

    def pair(figures: dict[str, Any]) -> str:
        return "–" if figures["count"] == 0 else f"{figures['p50_ms']:g} / {figures['p95_ms']:g}"

    for row in results:
        scored = f"{row['scored_fps']:g}" + ("" if row["keeps_up"] else " (falls behind)")
        lines.append(
            f"| {row['model']} | {row['cameras']} | {row['fps_per_camera']:g} | {scored} | "
            f"{pair(row['frame_to_score'])} | {pair(row['frame_to_alert'])} | {row['frame_to_alert']['count']} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 4, 16], help="camera counts to run")
    parser.add_argument("--fps", type=float, default=10.0, help="frames per second per camera")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds per setting")
    parser.add_argument(
        "--warmup", type=float, default=5.0, help="seconds of normal frames first, not measured"
    )
    parser.add_argument(
        "--model", type=Path, help="a learned detector (.onnx or .pt) to measure besides the baseline"
    )
    parser.add_argument(
        "--out", type=Path, help="JSON path (default benchmarks/results/latency-<machine>.json)"
    )
    args = parser.parse_args()
    if args.model is not None and not args.model.is_file():
        parser.error(f"--model {args.model}: no such file")
    machine_name = platform.node() or "machine"
    out = args.out or RESULTS / f"latency-{machine_name}.json"
    models: list[Path | None] = [None] + ([args.model] if args.model else [])
    load_before = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis") as server:
        settings = [(model, cameras) for model in models for cameras in args.cameras]
        for model, cameras in tqdm(settings, desc="latency", unit="setting"):
            results.append(run_setting(server.url, cameras, args, model, Path(tmp)))
    report = {
        "benchmark": "frame -> alert latency",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {**machine_info(), "name": machine_name, "loadavg_before": load_before},
        "method": (
            "embedded Redis and one `vigil infer` process on this machine; frames written at real rate, cameras "
            "staggered; frame->score: capture ts to the score's stream id (Redis time); frame->alert: capture ts "
            "of the frame that opened the alert to the `new` event's arrival at an XREAD reader (the event is written "
            "in the same transaction as the frame's score)"
        ),
        "target_p95_ms": TARGET_P95_MS,
        "results": results,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown_table(results))
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
