"""Soak test: `vigil up` with the embedded Redis and N looping file cameras for a while; is it steady?

    python benchmarks/soak.py [--minutes 10] [--cameras 8] [--fps 10] [--model PATH]

Every --interval seconds it samples the resident memory of every Vigil process (psutil) and the embedded
Redis' used_memory (INFO memory); every second, each camera's scoring lag (capture time of its newest frame
minus that of its newest scored frame) and the newest score's latency (scored minus captured). A WebSocket
client follows /ws/alerts the whole time. At the end it checks that memory stays flat once the frame buffer
is full, that the lag does not grow, that no frame was dropped, and that the WebSocket delivered every alert
event of the stream, each alert with one `new` event. Writes benchmarks/results/soak-<machine>.json and a
PNG plot of memory and lag over time (same name, .png).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import redis
import yaml
from tqdm import tqdm
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from tests import waiting  # noqa: E402  (after the path setup)
from workers.bus import keys, schemas  # noqa: E402  (after the path setup)
from workers.bus.connection import EMBEDDED_REDIS_DIR, URL_FILE, connect, free_port  # noqa: E402
from workers.bus.keys import DROPPED_FIELD  # noqa: E402
from workers.ingest.demo import write_demo_clip  # noqa: E402

RESULTS = PROJECT_ROOT / "benchmarks" / "results"
CLIP_SECONDS = 30
# Memory may move this much after the buffer is full (allocator noise), per process and for Redis.
FLAT_TOLERANCE = 0.05
FLAT_SLACK_MB = 8.0
# The lag may not grow by more than this from the first to the last third of the run (seconds).
LAG_GROWTH_S = 0.5


def process_role(process: psutil.Process) -> str | None:
    """'up', 'ingest', 'infer', 'retrain', 'api' or 'redis' for a process of the Vigil tree."""
    try:
        cmdline = process.cmdline()
    except psutil.Error:
        return None
    if cmdline and "redis-server" in Path(cmdline[0]).name:
        return "redis"
    if "service.cli" in cmdline:
        after = cmdline[cmdline.index("service.cli") + 1 :]
        return next((arg for arg in after if arg in ("up", "ingest", "infer", "retrain", "api")), None)
    return None


def rss_by_role(up: psutil.Process) -> dict[str, float]:
    """Resident memory in MB of each process of the tree, by role (several of a role are summed)."""
    result: dict[str, float] = defaultdict(float)
    for process in [up, *up.children(recursive=True)]:
        role = process_role(process)
        if role is None:
            continue
        try:
            result[role] += process.memory_info().rss / 2**20
        except psutil.Error:
            continue
    return dict(result)


def newest(client: redis.Redis, stream: str) -> dict[bytes, bytes] | None:
    entries = client.xrevrange(stream, count=1)
    return entries[0][1] if entries else None


def lags(client: redis.Redis, cameras: list[str]) -> tuple[dict[str, float], dict[str, float]]:
    """Per camera: the scoring lag (capture time of the newest frame minus that of the newest scored frame)
    and the newest score's latency (scored time minus capture time), in seconds."""
    lag, latency = {}, {}
    for camera in cameras:
        frame = newest(client, keys.frames_stream(camera))
        score = newest(client, keys.scores_stream(camera))
        if frame is not None and score is not None:
            lag[camera] = round(max(float(frame[b"ts"]) - float(score[b"ts"]), 0.0), 3)
            latency[camera] = round(float(score[b"scored_ts"]) - float(score[b"ts"]), 3)
    return lag, latency


def dropped_frames(client: redis.Redis, cameras: list[str]) -> dict[str, int]:
    """Frames lost by ingest (Redis unavailable) plus frames never scored (seq gaps seen by inference)."""
    statuses = {
        name.decode(): schemas.CameraStatus.model_validate_json(raw)
        for name, raw in client.hgetall(keys.CAMERA_STATUS).items()
    }
    result = {}
    for camera in cameras:
        status = statuses.get(camera)
        unscored = client.hget(keys.scorer_state_key(camera), DROPPED_FIELD)
        result[camera] = (status.dropped if status else 0) + int(unscored or 0)
    return result


class AlertFollower:
    """A WebSocket client of /ws/alerts from the first event on, run on a thread; reconnects after last id."""

    def __init__(self, ws_url: str) -> None:
        self.ws_url = ws_url
        self.event_ids: list[str] = []
        self.reconnects = 0
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="alert-follower", daemon=True)

    def _run(self) -> None:
        while not self.stop_event.is_set():
            last_id = self.event_ids[-1] if self.event_ids else "0"
            try:
                with ws_connect(f"{self.ws_url}?last_id={last_id}", open_timeout=10) as ws:
                    while not self.stop_event.is_set():
                        try:
                            frame = json.loads(ws.recv(timeout=1.0))
                        except TimeoutError:
                            continue
                        self.event_ids.append(frame["id"])
            except (OSError, ConnectionClosed, TimeoutError):
                self.reconnects += 1
                self.stop_event.wait(1.0)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(15)


def wait_for(condition: Any, timeout_s: float, what: str) -> Any:
    """Polls the starting service; a timeout ends the soak with its reason, not a traceback."""
    try:
        return waiting.wait_for(
            condition, timeout_s, what, every_s=0.5, retry_on=(httpx.HTTPError, OSError, redis.RedisError)
        )
    except AssertionError as timed_out:
        raise SystemExit(f"soak: {timed_out}") from None


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def growth_after(times: list[float], values: list[float], start_s: float) -> dict[str, float] | None:
    """Memory from the first sample at or after start_s to the last, and the fitted slope (MB/min)."""
    points = [(t, v) for t, v in zip(times, values, strict=True) if t >= start_s]
    if len(points) < 3:
        return None
    ts, vs = np.array([p[0] for p in points]), np.array([p[1] for p in points])
    slope = float(np.polyfit(ts, vs, 1)[0]) * 60.0
    return {
        "from_mb": round(float(vs[0]), 1),
        "to_mb": round(float(vs[-1]), 1),
        "max_mb": round(float(vs.max()), 1),
        "slope_mb_per_min": round(slope, 3),
    }


def is_flat(growth: dict[str, float] | None) -> bool:
    if growth is None:
        return True
    allowed = max(growth["from_mb"] * FLAT_TOLERANCE, FLAT_SLACK_MB)
    return (
        growth["to_mb"] - growth["from_mb"] <= allowed and growth["max_mb"] - growth["from_mb"] <= 2 * allowed
    )


def make_clips(folder: Path, cameras: int, fps: int) -> list[Path]:
    return [
        write_demo_clip(folder / f"cam{index + 1}.mp4", seconds=CLIP_SECONDS, fps=fps, seed=index)
        for index in tqdm(range(cameras), desc="demo clips", unit="clip")
    ]


def start_vigil(
    work: Path, clips: list[Path], args: argparse.Namespace, port: int
) -> subprocess.Popen[bytes]:
    site = {
        "cameras": [{"id": clip.stem, "source": str(clip), "loop": True, "fps": args.fps} for clip in clips]
    }
    site_file = work / "site.yml"
    site_file.write_text(yaml.safe_dump(site))
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env |= {
        "VIGIL_DATA_DIR": str(work / "data"),
        "VIGIL_LOG_LEVEL": "WARNING",
        "VIGIL_ANALYSIS__FPS": str(args.fps),
        "PYTHONUNBUFFERED": "1",
    }
    if args.buffer_seconds is not None:
        env["VIGIL_ANALYSIS__BUFFER_SECONDS"] = str(args.buffer_seconds)
    if args.model is not None:
        env["VIGIL_INFERENCE__MODEL_PATH"] = str(args.model.resolve())
    log_file = (work / "vigil-up.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "service.cli", "up", "--site", str(site_file), "--port", str(port)],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_vigil(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    memory, lag_samples = result["samples"]["memory"], result["samples"]["lag"]
    fig, (ax_rss, ax_redis, ax_lag) = plt.subplots(3, 1, figsize=(9, 10), sharex=True)
    minutes = [s["t_s"] / 60 for s in memory]
    for role in sorted({role for s in memory for role in s["rss_mb"]}):
        ax_rss.plot(minutes, [s["rss_mb"].get(role, np.nan) for s in memory], label=role)
    ax_rss.set_ylabel("RSS (MB)")
    ax_rss.legend(loc="upper left", fontsize=8, ncol=3)
    ax_rss.set_title(
        f"Vigil soak: {result['config']['cameras']} cameras at {result['config']['fps']:g} fps, "
        f"{result['machine']['cores']} cores ({result['detector']})"
    )
    ax_redis.plot(minutes, [s["redis_used_memory_mb"] for s in memory], color="tab:red")
    ax_redis.set_ylabel("Redis used_memory (MB)")
    buffer_min = result["config"]["buffer_seconds"] / 60
    for axis in (ax_rss, ax_redis):
        axis.axvline(buffer_min, color="grey", linestyle=":", label="buffer full")
    lag_minutes = [s["t_s"] / 60 for s in lag_samples]
    for camera in result["config"]["camera_ids"]:
        ax_lag.plot(lag_minutes, [s["lag_s"].get(camera, np.nan) for s in lag_samples], lw=0.7)
    ax_lag.set_ylabel("scoring lag (s), per camera")
    ax_lag.set_xlabel("minutes")
    for axis in (ax_rss, ax_redis, ax_lag):
        axis.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def summarize(
    memory: list[dict[str, Any]],
    lag_samples: list[dict[str, Any]],
    fill_s: float,
) -> dict[str, Any]:
    times = [s["t_s"] for s in memory]
    roles = sorted({role for s in memory for role in s["rss_mb"]})
    rss = {}
    for role in roles:
        values = [s["rss_mb"].get(role, np.nan) for s in memory]
        rss[role] = {
            "start_mb": round(values[0], 1),
            "end_mb": round(values[-1], 1),
            "max_mb": round(float(np.nanmax(values)), 1),
            "after_buffer_full": growth_after(times, values, fill_s),
        }
    used = [s["redis_used_memory_mb"] for s in memory]
    all_lags = [lag for s in lag_samples for lag in s["lag_s"].values()]
    all_latencies = [value for s in lag_samples for value in s["latency_s"].values()]
    third = max(len(lag_samples) // 3, 1)
    first = [lag for s in lag_samples[:third] for lag in s["lag_s"].values()]
    last = [lag for s in lag_samples[-third:] for lag in s["lag_s"].values()]
    return {
        "rss": rss,
        "redis_used_memory": {
            "start_mb": round(used[0], 1),
            "end_mb": round(used[-1], 1),
            "max_mb": round(max(used), 1),
            "after_buffer_full": growth_after(times, used, fill_s),
        },
        "lag_s": {
            "p50": percentile(all_lags, 50),
            "p95": percentile(all_lags, 95),
            "max": round(max(all_lags), 3) if all_lags else None,
            "p95_first_third": percentile(first, 95),
            "p95_last_third": percentile(last, 95),
        },
        "score_latency_s": {
            "p50": percentile(all_latencies, 50),
            "p95": percentile(all_latencies, 95),
            "max": round(max(all_latencies), 3) if all_latencies else None,
        },
    }


def sample(
    client: redis.Redis, up: psutil.Process, camera_ids: list[str], duration_s: float, interval_s: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Lag every second and memory every `interval_s` for `duration_s`: (memory samples, lag samples)."""
    memory: list[dict[str, Any]] = []
    lag_samples: list[dict[str, Any]] = []
    started = time.monotonic()
    next_memory = started
    with tqdm(total=round(duration_s), desc="soak", unit="s") as progress:
        while (elapsed := time.monotonic() - started) < duration_s:
            lag, latency = lags(client, camera_ids)
            lag_samples.append({"t_s": round(elapsed, 2), "lag_s": lag, "latency_s": latency})
            if time.monotonic() >= next_memory:
                info = client.info("memory")
                memory.append(
                    {
                        "t_s": round(elapsed, 2),
                        "rss_mb": {k: round(v, 1) for k, v in rss_by_role(up).items()},
                        "redis_used_memory_mb": round(info["used_memory"] / 2**20, 2),
                        "dropped": sum(dropped_frames(client, camera_ids).values()),
                        "alert_events": client.xlen(keys.ALERT_EVENTS),
                    }
                )
                next_memory += interval_s
            progress.update(round(time.monotonic() - started - progress.n))
            time.sleep(1.0)
    return memory, lag_samples


def soak_checks(
    summary: dict[str, Any],
    duration_s: float,
    buffer_s: float,
    interval_s: float,
    dropped: dict[str, int],
    missed: list[str],
    follower: AlertFollower,
    new_per_alert: Counter[str],
    statuses: dict[str, Any],
) -> dict[str, bool]:
    """What a soak must show: flat memory once the buffers are full, no growing lag, nothing lost."""
    return {
        "memory_flat_after_buffer_full": all(
            is_flat(role["after_buffer_full"]) for role in summary["rss"].values()
        )
        and is_flat(summary["redis_used_memory"]["after_buffer_full"]),
        "memory_flatness_measured": duration_s > buffer_s + 3 * interval_s,
        "lag_not_growing": (summary["lag_s"]["p95_last_third"] or 0.0)
        <= (summary["lag_s"]["p95_first_third"] or 0.0) + LAG_GROWTH_S,
        "no_dropped_frames": sum(dropped.values()) == 0,
        "no_dropped_alert_events": not missed and len(follower.event_ids) == len(set(follower.event_ids)),
        "one_new_event_per_alert": all(count == 1 for count in new_per_alert.values()),
        "cameras_streaming": all(state == "streaming" for state in statuses.values()),
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to run (default 10)")
    parser.add_argument("--cameras", type=int, default=8)
    parser.add_argument("--fps", type=int, default=10, help="analysis fps of every camera")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between memory samples")
    parser.add_argument("--model", type=Path, help="detector weights (default: the motion baseline)")
    parser.add_argument(
        "--buffer-seconds", type=float, help="frame buffer per camera (default: the settings' 300 s)"
    )
    parser.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/soak-<machine>.json)")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    machine_name = platform.node() or "machine"
    out = args.out or RESULTS / f"soak-{machine_name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    duration_s = args.minutes * 60.0

    from models.evaluation.jobs import machine_info
    from workers.config import AnalysisSettings

    buffer_s = args.buffer_seconds or AnalysisSettings().buffer_seconds
    with tempfile.TemporaryDirectory(prefix="vigil-soak-") as tmp:
        work = Path(tmp)
        clips = make_clips(work / "clips", args.cameras, args.fps)
        camera_ids = [clip.stem for clip in clips]
        port = free_port()
        api = f"http://127.0.0.1:{port}"
        vigil = start_vigil(work, clips, args, port)
        follower = AlertFollower(f"ws://127.0.0.1:{port}/ws/alerts")
        try:
            wait_for(lambda: httpx.get(f"{api}/readyz", timeout=2).status_code == 200, 120, "a ready API")
            url_file = work / "data" / EMBEDDED_REDIS_DIR / URL_FILE
            client = connect(url_file.read_text().strip())
            wait_for(lambda: len(lags(client, camera_ids)[0]) == len(camera_ids), 60, "every camera scored")
            up = psutil.Process(vigil.pid)
            follower.start()
            memory, lag_samples = sample(client, up, camera_ids, duration_s, args.interval)
            time.sleep(3.0)  # let the feed deliver the last events
            follower.stop()
            workers = [
                schemas.WorkerHeartbeat.model_validate_json(raw)
                for raw in client.hgetall(keys.WORKERS).values()
            ]
            detector = next((str(w.info.get("model")) for w in workers if w.role == "inference"), "?")
            frames_scored = sum(int(w.info.get("frames_scored", 0)) for w in workers if w.role == "inference")
            stream_events = [entry_id.decode() for entry_id, _ in client.xrange(keys.ALERT_EVENTS)]
            events = [schemas.AlertEvent.from_fields(f) for _, f in client.xrange(keys.ALERT_EVENTS)]
            dropped = dropped_frames(client, camera_ids)
            statuses = {
                c: json.loads(client.hget(keys.CAMERA_STATUS, c) or b"{}").get("state") for c in camera_ids
            }
        finally:
            follower.stop()
            stop_vigil(vigil)
        log_tail = (work / "vigil-up.log").read_text(errors="replace")[-4000:]

    received = set(follower.event_ids)
    missed = [event_id for event_id in stream_events if event_id not in received]
    new_per_alert = Counter(event.alert_id for event in events if event.type == "new")
    summary = summarize(memory, lag_samples, fill_s=buffer_s + args.interval)
    checks = soak_checks(
        summary, duration_s, buffer_s, args.interval, dropped, missed, follower, new_per_alert, statuses
    )
    result = {
        "benchmark": "soak",
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {**machine_info(), "name": machine_name},
        "detector": detector,
        "config": {
            "minutes": args.minutes,
            "cameras": args.cameras,
            "fps": args.fps,
            "camera_ids": camera_ids,
            "buffer_seconds": buffer_s,
            "memory_interval_s": args.interval,
            "redis": "embedded",
            "sources": f"generated {CLIP_SECONDS} s demo clips (360x240, H.264), looping",
        },
        "summary": summary,
        "frames_scored": frames_scored,
        "frames_dropped": dropped,
        "alert_events": {
            "in_stream": len(stream_events),
            "received_over_websocket": len(follower.event_ids),
            "missed_by_websocket": len(missed),
            "websocket_reconnects": follower.reconnects,
            "alerts": len(new_per_alert),
        },
        "camera_states": statuses,
        "checks": checks,
        "samples": {"memory": memory, "lag": lag_samples},
    }
    out.write_text(json.dumps(result, indent=1) + "\n")
    png = out.with_suffix(".png")
    plot(result, png)
    print(
        json.dumps({k: result[k] for k in ("summary", "frames_scored", "alert_events", "checks")}, indent=1)
    )
    print(f"wrote {out} and {png}")
    failed = [name for name, ok in checks.items() if not ok and name != "memory_flatness_measured"]
    if failed:
        print(
            f"soak: FAILED checks: {', '.join(failed)}\n--- vigil up log (tail) ---\n{log_tail}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
