"""Self-improvement benchmark: `vigil eval --mode online|coldstart` on a dataset and on a site-changed copy
of it, the precision of what each cycle mined (checked here against labels.json, which the loop never
sees), and one retraining cycle over a 3000-frame window while inference runs beside it.

    python benchmarks/bench_selftrain.py --model data/models/ped2.onnx          # MODEL.pt beside it
    python benchmarks/bench_selftrain.py --model M.onnx --parts site-change cycle

Parts:
- online: the testing videos streamed from the one-class model (paper protocol: no harm expected);
- site-change: the same on copies whose testing frames look as if the camera was moved and re-lit
  (zoom, shift, gamma, sensor noise: two such changes) or mounted upside down (SITE_CHANGES; each copy
  is written to a temporary folder, training links back), and for each the still-seen figure: the
  start model on the unchanged frames with its evidence kept only where the changed camera still sees
  (what the start model's own knowledge reaches once the lost edges are gone; a model fitted afresh can
  go past it);
- coldstart: no model and no labels; training and testing videos streamed in a seeded order;
- cycle: one cycle over a 3000-frame window in a second process (the retraining worker's settings and
  priority), while this one scores frames as an inference worker serving 6 cameras at 10 fps would:
  the frames/s it achieves and how late its batches finish, alone and during the cycle.

Writes benchmarks/results/selftrain-<machine>-<date>.json and prints a summary.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from benchmarks.harness import run_eval, write_report  # noqa: E402
from benchmarks.site_changes import SITE_CHANGES, change_warp, changed_copy  # noqa: E402
from models.detector.base import Detector  # noqa: E402
from models.detector.runtime import load_detector  # noqa: E402
from models.evaluation import datasets  # noqa: E402
from models.evaluation.jobs import machine_info, read_split  # noqa: E402
from models.evaluation.videos import auc_report, score_videos  # noqa: E402

DEFAULT_DATASET = PROJECT_ROOT.parent / "shared" / "datasets" / "ped2"
PARTS = ("online", "site-change", "coldstart", "cycle")


class _StillSeen(Detector):
    """A detector whose evidence outside `visible` (the part of the view the changed camera still sees)
    is dropped."""

    def __init__(self, detector: Detector, visible: np.ndarray) -> None:
        self.detector, self.visible, self.info = detector, visible, detector.info

    def stream_maps(self, clips: np.ndarray) -> np.ndarray:
        return self.detector.stream_maps(clips) * self.visible


def view_ceiling(model: Path, dataset: Path, change: dict[str, float]) -> float:
    """The start model's micro AUC on the unchanged testing frames, its evidence kept only where the
    changed camera still sees, scored as `vigil eval` scores. A zoom or shift takes the frame's edges out
    of view, and the anomalies that happen there with them: this is what the start model's knowledge
    reaches without them. It does not bound the online run: a model fitted afresh to the site's own
    normal frames knows the site better, and can go past it. It reads labels.json, as a benchmark may;
    the loop never does."""
    detector = load_detector(model, "cpu")
    height, width = detector.info.height, detector.info.width
    visible = cv2.warpAffine(
        np.ones((height, width), np.float32),
        change_warp(change, height, width),
        (width, height),
        flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0.0,
    )
    _, frames = read_split(dataset, "testing", height, width)
    labels = datasets.load_labels(dataset, frames) or {}
    scored = score_videos(
        _StillSeen(detector, visible), frames, desc="ceiling", fps=datasets.dataset_fps(dataset)
    )
    return auc_report(scored, labels)["micro_auc"]


def mining_precision(report: dict[str, Any], dataset: Path) -> list[dict[str, Any]]:
    """Per cycle: how many frames were mined as normal / abnormal and the share that labels.json agrees
    with (frames of training videos are normal)."""
    testing = datasets.list_videos(dataset, "testing")
    labels = datasets.load_labels(dataset, {v.name: v.frames for v in testing}) or {}
    out = []
    for cycle in report.get("cycles", []):
        row: dict[str, Any] = {"accepted": cycle["accepted"], "reason": cycle["reason"]}
        for kind, want_abnormal in (("normal", False), ("abnormal", True)):
            frames = cycle.get("mined_frames", {}).get(kind, [])
            right = 0
            for video, index in frames:
                split, _, name = video.rpartition("/")
                abnormal = split != "training" and bool(labels.get(name, np.zeros(0, bool))[index])
                right += abnormal == want_abnormal
            row[kind] = len(frames)
            row[f"{kind}_precision"] = right / len(frames) if frames else None
        row["seconds"] = cycle.get("seconds")
        out.append(row)
    return out


def summary_of(report: dict[str, Any], dataset: Path) -> dict[str, Any]:
    def auc(key: str) -> float | None:
        metrics = report.get(key)
        return metrics["micro_auc"] if metrics else None

    return {
        "start_micro_auc": auc("start_metrics"),
        "streamed_micro_auc": auc("streamed_metrics"),
        "final_micro_auc": auc("final_metrics"),
        "cycles": mining_precision(report, dataset),
        "wall_s": report["process_wall_s"],
        "report": {
            k: report[k] for k in ("start_metrics", "streamed_metrics", "final_metrics") if k in report
        },
    }


# ---------------------------------------------------------------- one cycle beside inference
def _cycle_process(model: str, dataset: str, frames: int, queue: Any) -> None:
    """In a process of its own, as the retraining worker: one cycle over `frames` buffered frames."""
    import torch

    from models.detector.runtime import load_detector
    from models.selftrain.config import OnlineConfig, Window
    from models.selftrain.cycle import run_cycle
    from workers.config import get_settings, online_config
    from workers.retrain.worker import yield_cpu_to_inference

    settings = get_settings()
    torch.set_num_threads(max(settings.retrain.threads, 1))
    yield_cpu_to_inference(settings)
    config: OnlineConfig = online_config(settings)
    weights = load_detector(Path(model).with_suffix(".pt"), "cpu", 1)
    serving = load_detector(Path(model), "cpu", 1)
    info = serving.info
    videos = [
        datasets.read_video(v, info.height, info.width)
        for v in datasets.list_videos(Path(dataset), "testing")
    ]
    videos += [
        datasets.read_video(v, info.height, info.width)
        for v in datasets.list_videos(Path(dataset), "training")
    ]
    stacked = np.concatenate(videos)[:frames]
    segments = np.concatenate([np.full(len(v), i) for i, v in enumerate(videos)])[:frames]
    queue.put(("started", time.time()))
    started = time.perf_counter()
    result = run_cycle(
        weights.model, weights.info.metadata, serving, Window(stacked, segments), [], config.selftrain
    )
    queue.put(
        (
            "done",
            {
                "seconds": time.perf_counter() - started,
                "accepted": result.accepted,
                "reason": result.reason,
                "mined": result.report.get("mined"),
                "phases_s": {
                    key: result.report.get(f"{key}_s") for key in ("mining", "adaptation", "validation")
                },
                "window_frames": len(stacked),
            },
        )
    )


def cycle_beside_inference(
    model: Path, dataset: Path, frames: int, cameras: int, fps: float
) -> dict[str, Any]:
    """Inference as a worker serving `cameras` cameras at `fps` (a batch of one frame of each camera every
    1/fps s): its capacity alone, then the frames/s it achieves and how late its batches finish, alone
    and while a cycle runs in another process."""
    from models.detector.runtime import load_detector
    from workers.config import get_settings

    detector = load_detector(model, "cpu", get_settings().inference.threads)
    info = detector.info
    video = datasets.read_video(datasets.list_videos(dataset, "testing")[0], info.height, info.width)
    clips = np.stack([video[t - info.history : t + 1] for t in range(info.history, info.history + cameras)])

    def capacity(seconds: float) -> float:
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            detector.stream_maps(clips)
            count += len(clips)
        return count / (time.perf_counter() - started)

    def paced(seconds: float) -> tuple[float, list[float]]:
        """Frames/s achieved at the cameras' rate and each batch's delay past its due time (s)."""
        period, count, delays = 1.0 / fps, 0, []
        started = due = time.perf_counter()
        while due - started < seconds:
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            detector.stream_maps(clips)
            count += len(clips)
            delays.append(time.perf_counter() - due)
            due += period
        return count / (time.perf_counter() - started), delays

    alone_capacity = capacity(20.0)
    alone_fps, alone_delays = paced(20.0)
    queue: Any = multiprocessing.get_context("spawn").Queue()
    process = multiprocessing.get_context("spawn").Process(
        target=_cycle_process, args=(str(model), str(dataset), frames, queue)
    )
    process.start()
    event, _ = queue.get(timeout=600)  # the child has read the window: the cycle starts
    assert event == "started"
    during_fps: list[float] = []
    during_delays: list[float] = []
    result = None
    while result is None:
        achieved, delays = paced(10.0)
        during_fps.append(achieved)
        during_delays += delays
        if not queue.empty():
            _, result = queue.get()
    process.join(60)
    return {
        "cameras": cameras,
        "camera_fps": fps,
        "demand_fps": cameras * fps,
        "inference_capacity_fps_alone": alone_capacity,
        "inference_fps_alone": alone_fps,
        "batch_delay_s_p95_alone": float(np.percentile(alone_delays, 95)),
        "inference_fps_during_cycle": float(np.median(during_fps)),
        "inference_fps_during_cycle_min": float(min(during_fps)),
        "batch_delay_s_p95_during_cycle": float(np.percentile(during_delays, 95)),
        "batch_delay_s_max_during_cycle": float(max(during_delays)),
        "cycle": result,
    }


def site_change_summary(
    change: dict[str, float], unchanged: float, changed: dict[str, Any], ceiling: float
) -> dict[str, Any]:
    """What the change cost the start model, what the online run won back, of all and of what the
    still-seen ceiling leaves recoverable."""
    start = changed["start_micro_auc"]
    cost, recoverable = unchanged - start, ceiling - start
    gain, streamed_gain = changed["final_micro_auc"] - start, changed["streamed_micro_auc"] - start
    return {
        "change": change,
        "unchanged_start_micro_auc": unchanged,
        **changed,
        "cost_of_the_change": cost,
        "won_back": gain,
        "won_back_share": gain / cost if cost > 0 else None,
        "still_seen_ceiling_micro_auc": ceiling,
        "recoverable_cost": recoverable,
        "won_back_share_of_recoverable": gain / recoverable if recoverable > 0 else None,
        "streamed_won_back_share_of_recoverable": streamed_gain / recoverable if recoverable > 0 else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", type=Path, required=True, help="one-class model (.onnx, MODEL.pt beside it)"
    )
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cycle-frames", type=int, default=3000, help="window of the timed cycle")
    parser.add_argument("--cameras", type=int, default=6, help="cameras the timed inference serves")
    parser.add_argument("--camera-fps", type=float, default=10.0, help="frames/s of each of those cameras")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results: dict[str, Any] = {
        "machine": machine_info(),
        "dataset": str(args.dataset),
        "model": str(args.model),
        "parts": args.parts,
        "seed": args.seed,
    }
    with tempfile.TemporaryDirectory() as tmp_dir:
        work = Path(tmp_dir)
        model = ["--model", str(args.model), "--seed", str(args.seed)]
        if "online" in args.parts:
            results["online"] = summary_of(
                run_eval(args.dataset, work, "online", "--mode", "online", *model), args.dataset
            )
        if "site-change" in args.parts:
            unchanged = results.get("online", {}).get("start_micro_auc")
            if unchanged is None:
                unchanged = run_eval(args.dataset, work, "oneclass", *model)["metrics"]["micro_auc"]
            for name, change in SITE_CHANGES.items():
                copy = changed_copy(args.dataset, work / name, change)
                changed = summary_of(run_eval(copy, work, name, "--mode", "online", *model), copy)
                results[name] = site_change_summary(
                    change, unchanged, changed, view_ceiling(args.model, args.dataset, change)
                )
        if "coldstart" in args.parts:
            report = run_eval(
                args.dataset, work, "coldstart", "--mode", "coldstart", "--seed", str(args.seed)
            )
            results["coldstart"] = summary_of(report, args.dataset)
        if "cycle" in args.parts:
            results["cycle"] = cycle_beside_inference(
                args.model, args.dataset, args.cycle_frames, args.cameras, args.camera_fps
            )
    out = write_report(results, "selftrain", args.out)
    print(summary_table(results))
    print(f"\nwritten to {out}")
    return 0


def summary_table(results: dict[str, Any]) -> str:
    rows = [
        "| run | start | streamed | final | cycles accepted | mined normal / abnormal precision |",
        "| --- | --- | --- | --- | --- | --- |",
    ]

    def figure(value: float | None) -> str:
        return f"{value:.4f}" if value is not None else "-"

    for key in ("online", *SITE_CHANGES, "coldstart"):
        if key not in results:
            continue
        run = results[key]
        cycles = run["cycles"]
        precisions = ", ".join(
            f"{figure(c['normal_precision'])} / {figure(c['abnormal_precision'])}" for c in cycles
        )
        accepted = sum(1 for c in cycles if c["accepted"])
        rows.append(
            f"| {key} | {figure(run['start_micro_auc'])} | {figure(run['streamed_micro_auc'])} | "
            f"{figure(run['final_micro_auc'])} | {accepted}/{len(cycles)} | {precisions} |"
        )
    for key in SITE_CHANGES:
        if key not in results:
            continue
        change = results[key]
        rows.append(
            f"\n{key}: cost {change['cost_of_the_change']:.4f} (from {change['unchanged_start_micro_auc']:.4f}), "
            f"won back {change['won_back']:.4f} ({figure(change['won_back_share'])} of it); "
            f"the still-seen ceiling {change['still_seen_ceiling_micro_auc']:.4f} leaves "
            f"{change['recoverable_cost']:.4f} recoverable: final won back "
            f"{figure(change['won_back_share_of_recoverable'])}, streamed "
            f"{figure(change['streamed_won_back_share_of_recoverable'])} of that"
        )
    if "cycle" in results:
        cycle = results["cycle"]
        rows.append(
            f"\ncycle over {cycle['cycle']['window_frames']} frames: {cycle['cycle']['seconds']:.0f} s "
            f"({cycle['cycle']['reason']}); inference for {cycle['cameras']} cameras at "
            f"{cycle['camera_fps']:g} fps ({cycle['demand_fps']:g} frames/s; capacity alone "
            f"{cycle['inference_capacity_fps_alone']:.0f}): {cycle['inference_fps_alone']:.1f} frames/s alone, "
            f"{cycle['inference_fps_during_cycle']:.1f} during it (min {cycle['inference_fps_during_cycle_min']:.1f}), "
            f"batch delay p95 {cycle['batch_delay_s_p95_alone'] * 1000:.0f} ms alone, "
            f"{cycle['batch_delay_s_p95_during_cycle'] * 1000:.0f} ms during it"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
