"""What an operator sees live: a dataset's test videos replayed over real RTSP to a real `vigil up`, its alerts
measured against the labels as `vigil eval` measures its own, side by side with `vigil eval` of the same model.

    python benchmarks/bench_live.py DATASET_DIR --model MODEL.onnx [--cameras 2] [--deal blocks|round-robin|by-camera]
        [--session-per-video] [--offline-report R.json --offline-scores S.csv] [--scores-out S.csv] [--out R.json]

The test videos are dealt to the cameras in name order (contiguous blocks, or round robin; or each to the camera
the dataset's cameras.json names, for a model fitted to several cameras' own views); each camera's videos
are concatenated into one H.264 MP4 at the dataset's frame rate and the frames' native size and served once by
its own loopback RTSP server (tests/rtsp_server.py, GStreamer): one stream session, the k-th frame of which is
the k-th frame of the clip. With --session-per-video each video is its own clip, served to the camera's next
connection: the camera reconnects between videos (a new session: the detector's past frames and the alert
hysteresis start afresh, as in `vigil eval`, while the camera's score statistics carry on), and no frame sees
a cut to another video in its past. `vigil up --site --model` runs with a fresh data directory and embedded
Redis, self-training off (VIGIL_RETRAIN__ENABLED=false; on with --self-training, the model's .pt beside it:
the report then lists the versions the retraining worker published, and the live figures are those of the
models served as they were swapped in) and a frame buffer longer than the replay (nothing trimmed); it is
stopped with SIGINT at the end.

Figures, over each camera's whole stream (its score statistics carry across its videos): event recall, alert
precision, false alerts per hour of normal footage and the delay to the frame that paged
(models/evaluation/events.py, as `vigil eval`), the micro AUC of the served scores, frames streamed, scored and
dropped, and the scoring lag (scored_ts - ts). Beside them: the live raw scores normalized and alerted on as
`vigil eval` does, each video afresh (what the transport alone changed), and `vigil eval --mode oneclass`
itself, run after the replay or read from --offline-report / --offline-scores.
Writes benchmarks/results/live-<dataset>[-sessions]-<machine>-<date>.json (or --out) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from benchmarks.bench_alerts import read_scores  # noqa: E402
from benchmarks.harness import EVAL_RUNNER, write_report  # noqa: E402
from benchmarks.live_cameras import CameraFootage, write_footage  # noqa: E402
from benchmarks.live_metrics import (  # noqa: E402
    CameraStream,
    alert_rows,
    camera_stream,
    hysteresis_check,
    lag_figures,
    live_events,
    micro_auc,
    rescored_per_video,
    score_agreement,
    video_auc,
)
from benchmarks.live_service import (  # noqa: E402
    CameraProgress,
    ReplayError,
    published_versions,
    replayed,
    run_in_work_dir,
    served_by_camera,
)
from models.detector.runtime import load_detector  # noqa: E402
from models.detector.scores import ScoreCalibration  # noqa: E402
from models.evaluation import datasets  # noqa: E402
from models.evaluation.events import event_report, raise_alerts  # noqa: E402
from models.evaluation.jobs import machine_info  # noqa: E402
from models.evaluation.videos import VideoScores  # noqa: E402
from models.scoring.hysteresis import HysteresisConfig  # noqa: E402
from workers.config import Settings, hysteresis_config  # noqa: E402

log = logging.getLogger("bench_live")
BUFFER_MARGIN_S = 120.0  # the frame buffer holds the whole replay and this much more


# ---------------------------------------------------------------------- the live run
def service_env(work: Path, fps: float, replay_s: float) -> dict[str, str]:
    """The environment of `vigil up` and of `vigil eval`: the caller's VIGIL_ settings, but a fresh data
    directory, the embedded Redis, no self-training and a frame buffer longer than the replay."""
    env = {name: value for name, value in os.environ.items() if name != "VIGIL_REDIS_URL"}
    settings_buffer = Settings().analysis.buffer_seconds
    env |= {
        "VIGIL_DATA_DIR": str(work / "data"),
        "VIGIL_RETRAIN__ENABLED": "false",
        "VIGIL_ANALYSIS__FPS": f"{fps:g}",
        "VIGIL_ANALYSIS__BUFFER_SECONDS": f"{max(settings_buffer, replay_s + BUFFER_MARGIN_S):.0f}",
        "VIGIL_LOG_LEVEL": env.get("VIGIL_LOG_LEVEL", "INFO"),
        "PYTHONUNBUFFERED": "1",
    }
    return env


def run_live(
    args: argparse.Namespace, footage: list[CameraFootage], env: dict[str, str], work: Path
) -> tuple[dict[str, dict[str, Any]], dict[str, Any], list[dict[str, Any]]]:
    """Replays the footage to `vigil up`; per camera what it served, the run's timings, and the model
    versions the service recorded (the retraining worker's, with self-training on)."""
    with replayed(args.model, footage, env, work, args.start_timeout, args.drain_timeout) as (
        vigil,
        progress,
        started,
    ):
        served = served_by_camera(vigil, footage, progress)
        timings = replay_timings(progress, started)
        versions = published_versions(vigil, started)
    timings["stop"] = vigil.stop_report
    return served, timings, versions


def replay_timings(progress: dict[str, CameraProgress], started: float) -> dict[str, Any]:
    def since(moment: float | None) -> float | None:
        return round(moment - started, 1) if moment is not None else None

    return {
        camera: {
            "first_frame_s": since(p.started_s),
            "stream_ended_s": since(p.ended_s),
            "all_scored_s": since(p.scored_s),
        }
        for camera, p in progress.items()
    }


# ---------------------------------------------------------------------- offline
def run_offline(
    args: argparse.Namespace, env: dict[str, str], work: Path
) -> tuple[dict[str, Any], Path | None]:
    """`vigil eval DATASET --mode oneclass --model MODEL`: its report and scores CSV (given ones instead
    with --offline-report; the CSV may then be missing)."""
    if args.offline_report is not None:
        return json.loads(args.offline_report.read_text()), args.offline_scores
    report, scores = work / "offline.json", work / "offline-scores.csv"
    command = [sys.executable, "-c", EVAL_RUNNER, "eval", str(args.dataset), "--mode", "oneclass"]
    command += ["--model", str(args.model.resolve()), "--scores-out", str(scores), "--report", str(report)]
    log.info("offline: vigil eval %s --model %s", args.dataset, args.model)
    completed = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
    if completed.returncode != 0:
        raise ReplayError(f"vigil eval failed ({completed.returncode}):\n{completed.stderr[-3000:]}")
    return json.loads(report.read_text()), scores


# ---------------------------------------------------------------------- report
FIGURES = (
    "events",
    "alerts",
    "event_recall",
    "alert_precision",
    "false_alerts_per_hour",
    "delay_median_s",
    "delay_p90_s",
)


def summarize(
    streams: list[CameraStream],
    labels: dict[str, np.ndarray],
    offline: tuple[dict[str, Any], dict[str, VideoScores] | None],
    config: HysteresisConfig,
    calibrations: dict[str, ScoreCalibration | None],
) -> dict[str, Any]:
    """The report's figures: live, the live raw scores normalized per video as `vigil eval` does, and
    `vigil eval` itself."""
    fps = streams[0].footage.fps
    names = [name for s in streams for name in s.footage.videos]
    offline_report, offline_scores = offline
    rescored = rescored_per_video(streams, calibrations)
    rescored_alerts = raise_alerts(
        {name: VideoScores(video.raw, np.nan_to_num(video.scores)) for name, video in rescored.items()},
        config,
        fps,
    )
    results: dict[str, Any] = {
        "live": {**micro_auc(streams, labels), **live_events(streams, labels, fps, config.threshold)},
        "live_raw_rescored_per_video": {
            **video_auc(rescored, labels),
            **event_report(rescored_alerts, {name: labels[name] for name in names}, fps, config.threshold),
        },
        "offline": {**(offline_report.get("metrics") or {}), **(offline_report.get("events") or {})},
        "offline_timings": offline_report.get("timings"),
        "lag": lag_figures(streams),
        "hysteresis_check": hysteresis_check(streams, config, fps),
        "score_agreement": score_agreement(streams, offline_scores) if offline_scores else None,
        "cameras": {
            s.footage.camera: {
                **s.facts,
                "alignment": s.alignment,
                "lag": lag_figures([s]),
                "alerts": alert_rows(s, labels),
            }
            for s in streams
        },
    }
    rows = [row for camera in results["cameras"].values() for row in camera["alerts"]]
    results["live"]["alerts_at_cuts"] = sum(row["at_cut"] for row in rows)
    results["live"]["false_alerts_at_cuts"] = sum(row["at_cut"] and not row["true"] for row in rows)
    return results


def table(results: dict[str, Any]) -> str:
    def cell(value: Any) -> str:
        return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = [
        "| run | micro AUC | " + " | ".join(FIGURES) + " |",
        "| --- " * (len(FIGURES) + 2) + "|",
    ]
    for name in ("live", "live_raw_rescored_per_video", "offline"):
        row = results[name]
        lines.append(
            f"| {name} | {cell(row.get('micro_auc'))} | "
            + " | ".join(cell(row.get(f)) for f in FIGURES)
            + " |"
        )
    lines += [
        "",
        "| camera | videos | streamed | ingested | scored | dropped | lag p50 / p90 / max (s) | alignment |",
        "| --- " * 8 + "|",
    ]
    for camera, facts in results["cameras"].items():
        lag = facts["lag"]
        lines.append(
            f"| {camera} | {','.join(facts['videos'])} | {facts['frames_streamed']} | {facts['frames_ingested']} | "
            f"{facts['frames_scored']} | {facts['frames_dropped']} | {lag['p50_s']} / {lag['p90_s']} / {lag['max_s']} | "
            f"{facts['alignment']} |"
        )
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "dataset", type=Path, metavar="DATASET_DIR", help="testing/<video>/ frames and labels.json"
    )
    parser.add_argument(
        "--model", type=Path, required=True, help="the detector vigil up serves (.onnx or .pt)"
    )
    parser.add_argument(
        "--cameras", type=int, default=2, help="cameras the test videos are dealt to (default 2)"
    )
    parser.add_argument(
        "--deal",
        choices=("blocks", "round-robin", "by-camera"),
        default="blocks",
        help="how videos go to cameras (by-camera: as the dataset's cameras.json names them, --cameras unused)",
    )
    parser.add_argument(
        "--session-per-video",
        action="store_true",
        help="serve each video as its own stream session (the camera reconnects between videos) instead of "
        "one stream of all its videos",
    )
    parser.add_argument(
        "--offline-report", type=Path, help="a `vigil eval --report` of this model instead of a run"
    )
    parser.add_argument(
        "--offline-scores", type=Path, help="its --scores-out CSV (score agreement, alignment)"
    )
    parser.add_argument(
        "--self-training",
        action="store_true",
        help="run the retraining worker too (the model's .pt beside it): its cycles swap models in as the "
        "cameras stream",
    )
    parser.add_argument("--start-timeout", type=float, default=180.0, help="seconds for the first frames")
    parser.add_argument(
        "--drain-timeout", type=float, default=900.0, help="seconds to score after a stream ends"
    )
    parser.add_argument(
        "--work", type=Path, help="keep clips, logs and the data directory here (default: temporary)"
    )
    parser.add_argument(
        "--scores-out",
        type=Path,
        help="write camera,video,frame,seq,score,raw,lag_s for every frame the cameras streamed",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="report path (default benchmarks/results/live-<dataset>-<machine>-<date>.json)",
    )
    args = parser.parse_args()
    if not args.model.is_file():
        parser.error(f"--model {args.model}: no such file")
    if args.offline_scores is not None and args.offline_report is None:
        parser.error("--offline-scores goes with --offline-report")
    return args


def write_live_scores(streams: list[CameraStream], path: Path) -> None:
    """Every frame of every camera's clip with its served score (empty where it was never scored)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        out.write("camera,video,frame,seq,score,raw,lag_s\n")
        for s in streams:
            seq_of = {index: seq for seq, index in s.index_of_seq.items()}
            for index in range(s.footage.frames):
                video, frame = s.footage.locate(index)
                scored = np.isfinite(s.score[index])
                values = (
                    f"{seq_of[index]},{s.score[index]:.7f},{s.raw[index]:.5f},{s.lag_s[index]:.3f}"
                    if scored
                    else ",,,"
                )
                out.write(f"{s.footage.camera},{video},{frame},{values}\n")


def main() -> int:
    args = parse_args()
    return run_in_work_dir("bench_live", args.work, lambda work: measure(args, work))


def measure(args: argparse.Namespace, work: Path) -> int:
    fps = datasets.dataset_fps(args.dataset)
    footage = write_footage(args.dataset, args.cameras, args.deal, work, args.session_per_video)
    lengths = {name: range(n) for f in footage for name, n in zip(f.videos, f.lengths, strict=True)}
    labels = datasets.load_labels(args.dataset, lengths)
    if labels is None:
        raise ReplayError(f"{args.dataset}: no labels.json, nothing to measure the alerts against")
    info = load_detector(args.model, device="cpu", threads=1).info
    # each camera's in the model (its own view's, where the model keeps one)
    calibrations = {
        item.camera: ScoreCalibration.from_dict(info.for_camera(item.camera).metadata["calibration"])
        if info.metadata.get("calibration")
        else None
        for item in footage
    }
    replay_s = max(item.frames for item in footage) / fps
    log.info(
        "footage: %s", "; ".join(f"{f.camera} {len(f.videos)} videos, {f.frames} frames" for f in footage)
    )
    env = service_env(work, fps, replay_s) | (
        {"VIGIL_RETRAIN__ENABLED": "true"} if args.self_training else {}
    )
    os.environ.update({name: env[name] for name in env if name.startswith("VIGIL_")})  # the settings it runs
    settings = Settings()
    config = hysteresis_config(settings.alerts, fps=fps)
    load_before = os.getloadavg()
    started = time.monotonic()
    served, timings, versions = run_live(args, footage, env, work)
    live_wall = time.monotonic() - started
    load_after = os.getloadavg()
    offline_report, offline_csv = run_offline(args, env, work)
    offline_scores = read_scores(offline_csv) if offline_csv is not None else None
    streams = [camera_stream(item, served[item.camera], offline_scores) for item in footage]
    if args.scores_out is not None:
        write_live_scores(streams, args.scores_out)
    results = summarize(streams, labels, (offline_report, offline_scores), config, calibrations)
    report = {
        "benchmark": "live replay over RTSP",
        "dataset": str(args.dataset),
        "model": str(args.model),
        "cameras": args.cameras,
        "deal": args.deal,
        "streams": "a session per video" if args.session_per_video else "one stream per camera",
        "fps": fps,
        "settings": {
            "threshold": config.threshold,
            "start_frames": config.start_frames,
            "end_frames": config.end_frames,
            "cooldown_s": config.cooldown_s,
            "retrain_enabled": settings.retrain.enabled,
            "buffer_seconds": settings.analysis.buffer_seconds,
        },
        "method": __doc__.split("\n\n", 2)[2].strip(),
        **results,
        "versions": versions,
        "timings": {"replay_s": round(replay_s, 1), "live_wall_s": round(live_wall, 1), **timings},
        "machine": {**machine_info(), "loadavg_before": load_before, "loadavg_after_live": load_after},
    }
    kind = f"live-{args.dataset.resolve().name}" + ("-sessions" if args.session_per_video else "")
    kind += "-selftrain" if args.self_training else ""
    path = write_report(report, kind, args.out)
    print(table(results))
    print(f"\nwritten to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
