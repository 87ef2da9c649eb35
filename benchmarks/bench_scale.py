"""How many cameras x fps the frame bus holds: one Redis, and a Redis Cluster of three masters (each with a
replica), on this machine, with the motion baseline scoring (so that the bus is measured, not the model).

For each Redis layout the load grows in steps (cameras at --fps each): a writer process stores synthetic
analysis frames (--width x --height grayscale, the ingest worker's stream entries and caps) for every camera
at real rate, and `vigil infer` processes (--workers) score them. A step is held when the writer keeps its schedule,
the frames scored per second reach 90% of those written and the scoring ends less than one second of frames
behind; the steps stop at the first one not held. Per step: frames
written and scored per second, the backlog left, the Redis CPU seconds per frame (INFO cpu deltas, masters
and replicas), Redis memory per camera (MEMORY USAGE of a frame stream, INFO memory) and the load average.
Also measured: the bytes and encode/decode cost of analysis frames stored raw, as JPEG and as PNG (UCSD ped2
frames at the analysis size), and the arithmetic for 1,000 cameras at 10 fps from the measured figures.

    python benchmarks/bench_scale.py                    # single and cluster, 4, 8, 12, 16, 24, ... cameras at 10 fps
    python benchmarks/bench_scale.py --cameras 4,8 --step-seconds 10

Writes benchmarks/results/scale-<machine>-<date>.json (or --out). Needs redis-server and redis-cli (Debian's
redis-server, redis-tools) for the cluster; the single Redis is the embedded one.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import redis

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from benchmarks.harness import write_report  # noqa: E402
from models.evaluation.jobs import machine_info  # noqa: E402
from tests.redis_cluster import RedisClusterNodes, missing_tools  # noqa: E402
from workers.bus import keys, schemas  # noqa: E402
from workers.bus.connection import EmbeddedRedis, connect, is_cluster  # noqa: E402
from workers.config import Settings  # noqa: E402

PED2_FRAMES = PROJECT_ROOT.parent / "shared" / "datasets" / "ped2" / "testing" / "01"
BACKGROUNDS = 16  # distinct noisy frames cycled through by the writer
WARMUP_S = 5.0
TARGET_CAMERAS, TARGET_FPS = 1000, 10.0


# ---------------------------------------------------------------- the frame writer (a child process)
def write_frames(url: str, cameras: int, fps: float, seconds: float, width: int, height: int) -> None:
    """Stores every camera's frames at `fps` for `seconds` as the ingest worker does; prints a JSON summary."""
    client = connect(url)
    settings = Settings()
    maxlen = settings.analysis.buffer_frames(fps)
    rng = np.random.default_rng(0)
    base = rng.integers(40, 200, (height, width), dtype=np.uint8)
    frames = [
        np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8).tobytes() for _ in range(16)
    ]
    names = [camera_id(index) for index in range(cameras)]
    start, written, behind = time.monotonic(), 0, 0.0
    tick = 0
    while (due := start + tick / fps) < start + seconds:
        if (wait := due - time.monotonic()) > 0:
            time.sleep(wait)
        behind = max(behind, -wait)
        with client.pipeline(transaction=False) as pipe:
            for name in names:
                message = schemas.FrameMessage(
                    camera=name, seq=tick, ts=time.time(), session=0, width=width, height=height,
                    gray=frames[tick % BACKGROUNDS],
                )  # fmt: skip
                pipe.xadd(keys.frames_stream(name), message.to_fields(), maxlen=maxlen, approximate=True)
            pipe.execute()
        written += cameras
        tick += 1
    print(json.dumps({"written": written, "seconds": time.monotonic() - start, "behind_s": behind}))


def camera_id(index: int) -> str:
    return f"cam{index:04d}"


# ---------------------------------------------------------------- Redis layouts
class Layout:
    """A Redis (embedded) or a Redis Cluster (3 masters + 3 replicas) started for the benchmark."""

    def __init__(self, kind: str, root: Path) -> None:
        self.kind = kind
        self.single = EmbeddedRedis(root / "redis") if kind == "single" else None
        self.cluster = RedisClusterNodes(root / "cluster") if kind == "cluster" else None

    def start(self) -> str:
        if self.single is not None:
            return self.single.start().url
        assert self.cluster is not None
        return self.cluster.start().url

    def nodes(self) -> list[tuple[str, redis.Redis]]:
        """(role, client) of every Redis process."""
        if self.single is not None:
            return [("master", redis.Redis(port=self.single.port))]
        assert self.cluster is not None
        out = []
        for port in self.cluster.live_ports():
            node = self.cluster.node(port)
            out.append(("master" if node.info("replication")["role"] == "master" else "replica", node))
        return out

    def stop(self) -> None:
        if self.single is not None:
            self.single.stop()
        if self.cluster is not None:
            self.cluster.stop()


def redis_cpu(layout: Layout) -> dict[str, float]:
    """CPU seconds (user + sys) used so far, by role."""
    used: dict[str, float] = {"master": 0.0, "replica": 0.0}
    for role, node in layout.nodes():
        info = node.info("cpu")
        used[role] += float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    return used


def redis_memory(layout: Layout) -> dict[str, int]:
    used: dict[str, int] = {"master": 0, "replica": 0}
    for role, node in layout.nodes():
        used[role] += int(node.info("memory")["used_memory"])
    return used


# ---------------------------------------------------------------- one step of load
def start_workers(
    url: str, count: int, work: Path, args: argparse.Namespace
) -> list[subprocess.Popen[bytes]]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("VIGIL_")}
    env |= {
        "VIGIL_REDIS_URL": url,
        "VIGIL_DATA_DIR": str(work / "data"),
        "VIGIL_ANALYSIS__FPS": str(args.fps),
        "VIGIL_ANALYSIS__WIDTH": str(args.width),
        "VIGIL_ANALYSIS__HEIGHT": str(args.height),
        "VIGIL_HEARTBEAT_S": "1",
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    command = [sys.executable, "-m", "service.cli", "infer"]
    processes = []
    for index in range(count):
        log = (work / f"infer-{index}.log").open("wb")
        processes.append(
            subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        )
    return processes


def stop_processes(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def scored_total(client: redis.Redis, cameras: int) -> int:
    with client.pipeline(transaction=False) as pipe:
        for index in range(cameras):
            pipe.xlen(keys.scores_stream(camera_id(index)))
        return sum(int(length) for length in pipe.execute())


def add_cameras(client: redis.Redis, cameras: int, args: argparse.Namespace) -> None:
    for index in range(cameras):
        config = schemas.CameraConfig(id=camera_id(index), source="bench://synthetic", fps=args.fps)
        client.hset(keys.CAMERAS, config.id, config.model_dump_json())


def run_step(layout: Layout, url: str, cameras: int, args: argparse.Namespace) -> dict[str, Any]:
    """Frames for `cameras` cameras at args.fps for WARMUP_S + args.step_seconds; figures of the last part."""
    client = connect(url)
    add_cameras(client, cameras, args)
    for index in range(cameras):  # each step starts clean (XTRIM keeps the consumer group)
        client.xtrim(keys.frames_stream(camera_id(index)), maxlen=0)
        client.xtrim(keys.scores_stream(camera_id(index)), maxlen=0)
    writer = subprocess.Popen(
        [sys.executable, __file__, "--write", url, str(cameras), str(args.fps),
         str(WARMUP_S + args.step_seconds), str(args.width), str(args.height)],
        stdout=subprocess.PIPE, cwd=PROJECT_ROOT,
    )  # fmt: skip
    samples = []  # (time, frames scored, Redis CPU by role) about every second while the writer runs
    while writer.poll() is None:
        samples.append((time.monotonic(), scored_total(client, cameras), redis_cpu(layout)))
        time.sleep(1.0)
    out, _ = writer.communicate(timeout=60)
    writer_summary = json.loads(out.decode().strip().splitlines()[-1])
    # the window: from WARMUP_S after the first frame was scored to the last sample of the writer's run
    first = next((t for t, scored, _ in samples if scored > 0), samples[0][0])
    window = [sample for sample in samples if sample[0] >= first + WARMUP_S] or samples[-2:]
    (t0, scored0, cpu0), (t1, scored1, cpu1) = window[0], window[-1]
    elapsed = max(t1 - t0, 1e-6)
    offered = cameras * args.fps
    scored_per_s = (scored1 - scored0) / elapsed
    frames = offered * elapsed
    stream_bytes = int(client.memory_usage(keys.frames_stream(camera_id(0)), samples=0) or 0)
    stream_len = int(client.xlen(keys.frames_stream(camera_id(0))))
    step = {
        "cameras": cameras,
        "fps_per_camera": args.fps,
        "frames_offered_per_s": offered,
        "frames_written_per_s": round(writer_summary["written"] / writer_summary["seconds"], 1),
        "writer_behind_s": round(writer_summary["behind_s"], 3),
        "frames_scored_per_s": round(scored_per_s, 1),
        "measured_s": round(elapsed, 1),
        "backlog_frames_at_end": writer_summary["written"] - scored_total(client, cameras),
        "redis_cpu_s_per_s": {role: round((cpu1[role] - cpu0[role]) / elapsed, 3) for role in cpu0},
        "redis_cpu_ms_per_frame": {
            role: round(1000 * (cpu1[role] - cpu0[role]) / frames, 4) for role in cpu0
        },
        "redis_used_memory_bytes": redis_memory(layout),
        "frame_stream_bytes_per_entry": round(stream_bytes / max(stream_len, 1)),
        "loadavg": [round(value, 2) for value in os.getloadavg()],
    }
    # held: the writer kept its schedule, the scoring its pace, and it ends less than a second of frames behind
    step["held"] = (
        step["writer_behind_s"] < 1.0
        and scored_per_s >= 0.9 * offered
        and step["backlog_frames_at_end"] <= offered
    )
    client.close()
    return step


def run_layout(kind: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    layout = Layout(kind, work / kind)
    url = layout.start()
    workers: list[subprocess.Popen[bytes]] = []
    steps = []
    try:
        client = connect(url)
        add_cameras(client, 1, args)
        workers = start_workers(url, args.workers, work / kind, args)
        deadline = time.monotonic() + 120
        while not client.hlen(keys.WORKERS) >= args.workers:  # each worker's first heartbeat
            if time.monotonic() > deadline:
                raise RuntimeError(f"the inference workers did not start: see {work / kind}/infer-*.log")
            time.sleep(0.5)
        for cameras in args.cameras:
            step = run_step(layout, url, cameras, args)
            steps.append(step)
            print(f"{kind}: {json.dumps(step)}", flush=True)
            if not step["held"]:
                break
        redis_nodes = len(layout.nodes())
        cluster_mode = is_cluster(client)
    finally:
        stop_processes(workers)
        layout.stop()
    return {"layout": kind, "cluster_client": cluster_mode, "redis_processes": redis_nodes, "steps": steps}


# ---------------------------------------------------------------- raw or compressed analysis frames
def analysis_frames(width: int, height: int, count: int = 120) -> tuple[list[np.ndarray], str]:
    """Real frames (UCSD ped2) at the analysis size, else a synthetic scene."""
    paths = sorted(PED2_FRAMES.glob("*.jpg"))[:count]
    if paths:
        frames = [
            cv2.resize(
                cv2.imread(str(p), cv2.IMREAD_GRAYSCALE), (width, height), interpolation=cv2.INTER_AREA
            )
            for p in paths
        ]
        return frames, f"UCSD ped2 testing/01, {len(frames)} frames"
    from workers.ingest.demo import demo_frames

    return list(
        demo_frames(seconds=count / 10, fps=10, size=(width, height))
    ), "the demo scene (ped2 not found)"


def compression_costs(width: int, height: int) -> dict[str, Any]:
    """Bytes per frame and encode/decode milliseconds per frame, raw vs JPEG vs PNG."""
    frames, source = analysis_frames(width, height)
    formats: dict[str, tuple[str, list[int]]] = {
        "jpeg_q90": (".jpg", [cv2.IMWRITE_JPEG_QUALITY, 90]),
        "jpeg_q75": (".jpg", [cv2.IMWRITE_JPEG_QUALITY, 75]),
        "png_level1": (".png", [cv2.IMWRITE_PNG_COMPRESSION, 1]),
        "png_level3": (".png", [cv2.IMWRITE_PNG_COMPRESSION, 3]),
    }
    results: dict[str, Any] = {
        "source": source,
        "raw": {"bytes": width * height, "encode_ms": 0.0, "decode_ms": 0.0},
    }
    for name, (suffix, params) in formats.items():
        start = time.perf_counter()
        encoded = [cv2.imencode(suffix, frame, params)[1].tobytes() for frame in frames]
        encode_ms = 1000 * (time.perf_counter() - start) / len(frames)
        start = time.perf_counter()
        decoded = [cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE) for data in encoded]
        decode_ms = 1000 * (time.perf_counter() - start) / len(frames)
        error = float(
            np.mean([np.abs(a.astype(np.int16) - b).mean() for a, b in zip(frames, decoded, strict=True)])
        )
        results[name] = {
            "bytes": round(float(np.mean([len(data) for data in encoded]))),
            "encode_ms": round(encode_ms, 3),
            "decode_ms": round(decode_ms, 3),
            "mean_abs_pixel_error": round(error, 3),
        }
    return results


# ---------------------------------------------------------------- 1,000 cameras
def projection(
    layouts: list[dict[str, Any]], compression: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    """The arithmetic for TARGET_CAMERAS at TARGET_FPS from the measured figures (assumptions stated)."""
    all_steps = [step for layout in layouts for step in layout["steps"]]
    if not all_steps:
        return {}
    entry = max(step["frame_stream_bytes_per_entry"] for step in all_steps)
    frames_per_s = TARGET_CAMERAS * TARGET_FPS
    buffer_frames = Settings().analysis.buffer_frames(TARGET_FPS)
    # per frame at each layout's highest load: the least diluted by fixed costs (polls, heartbeats), still
    # an upper bound on what one more frame costs
    busiest = [
        max(layout["steps"], key=lambda step: step["frames_offered_per_s"])
        for layout in layouts
        if layout["steps"]
    ]
    master_ms = max(step["redis_cpu_ms_per_frame"]["master"] for step in busiest)
    per_process = max(step["frames_scored_per_s"] for step in all_steps) / args.workers
    node_memory_gb, cpu_budget = 48.0, 0.5  # data per node (of a 64 GB host), main-thread share to use
    memory_gb = TARGET_CAMERAS * buffer_frames * entry / 1e9
    jpeg = compression["jpeg_q90"]
    return {
        "cameras": TARGET_CAMERAS,
        "fps": TARGET_FPS,
        "frames_per_s": frames_per_s,
        "frame_entry_bytes_raw": entry,
        "bytes_per_s_into_redis_raw": frames_per_s * entry,
        "buffer_frames_per_camera": buffer_frames,
        "buffered_window_gb_raw": round(memory_gb, 1),
        "assumed_data_gb_per_node": node_memory_gb,
        "masters_for_memory": math.ceil(memory_gb / node_memory_gb),
        "redis_master_cpu_ms_per_frame_at_the_highest_load": master_ms,
        "masters_for_cpu": math.ceil(frames_per_s * master_ms / 1000 / cpu_budget),
        "inference_frames_per_s_per_process_motion_baseline": round(per_process, 1),
        "inference_processes_motion_baseline": math.ceil(frames_per_s / per_process) if per_process else None,
        "jpeg_q90": {
            "bytes_per_s_into_redis": frames_per_s * (entry - compression["raw"]["bytes"] + jpeg["bytes"]),
            "buffered_window_gb": round(
                TARGET_CAMERAS * buffer_frames * (entry - compression["raw"]["bytes"] + jpeg["bytes"]) / 1e9,
                1,
            ),
            "encode_cores": round(frames_per_s * jpeg["encode_ms"] / 1000, 2),
            "decode_cores_per_read": round(frames_per_s * jpeg["decode_ms"] / 1000, 2),
        },
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--layouts", default="single,cluster", help="single, cluster or both")
    parser.add_argument(
        "--cameras", default="4,8,12,16,24,32,48,64", help="load steps: cameras at --fps each"
    )
    parser.add_argument("--fps", type=float, default=10.0)
    defaults = Settings().analysis
    parser.add_argument("--width", type=int, default=defaults.width)
    parser.add_argument("--height", type=int, default=defaults.height)
    parser.add_argument("--workers", type=int, default=1, help="inference processes")
    parser.add_argument("--step-seconds", type=float, default=15.0, help="measured seconds per step")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    args.cameras = [int(value) for value in args.cameras.split(",")]
    args.layouts = [value.strip() for value in args.layouts.split(",")]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if "cluster" in args.layouts and (missing := missing_tools()):
        print(f"the cluster layout needs {', '.join(missing)} (apt-get install redis-server redis-tools)")
        return 2
    started = time.monotonic()
    load_before = [round(value, 2) for value in os.getloadavg()]
    compression = compression_costs(args.width, args.height)
    print(json.dumps(compression), flush=True)
    with tempfile.TemporaryDirectory(prefix="vigil-scale-") as tmp:
        layouts = [run_layout(kind, args, Path(tmp)) for kind in args.layouts]
    report = {
        "benchmark": "scale",
        "method": __doc__.split("\n\n")[0] if __doc__ else "",
        "settings": {key: value for key, value in vars(args).items() if key != "out"} | {"out": None},
        "machine": machine_info(),
        "loadavg_before": load_before,
        "loadavg_after": [round(value, 2) for value in os.getloadavg()],
        "seconds": round(time.monotonic() - started, 1),
        "compression": compression,
        "layouts": layouts,
        "projection": projection(layouts, compression, args),
    }
    path = write_report(report, "scale", args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--write":
        url, cameras, fps, seconds, width, height = sys.argv[2:8]
        write_frames(url, int(cameras), float(fps), float(seconds), int(width), int(height))
    else:
        sys.exit(main())
