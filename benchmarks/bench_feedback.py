"""Operator-in-the-loop benchmark: a simulated operator labels the frames Vigil proposes, round after round,
and the retraining worker's cycle learns from the labels (mining overridden, ordinal head trained).

    python benchmarks/bench_feedback.py                       # from the cold-start model, 5 rounds on Ped2
    python benchmarks/bench_feedback.py --model M.onnx        # from a given model (MODEL.pt beside it)

As in the paper's protocol (self-trained ordinal regression, section 4.5): each round the operator is
shown k = 5 frames from the top 10% scored (the API's proposals: highest-scored unlabelled peaks) and labels
each with its 5 adjacent frames on each side, using labels.json as the oracle; then one retraining cycle
runs over the testing stream with those labels, and every testing frame is rescored by the model that
serves. A control runs the same cycles without any label, so that the gain of the feedback is told apart
from that of self-training alone.

Writes benchmarks/results/feedback-<machine>-<date>.json and prints the AUC after each round.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from benchmarks.harness import EVAL_RUNNER, write_report  # noqa: E402
from models.detector.runtime import load_detector  # noqa: E402
from models.evaluation import datasets  # noqa: E402
from models.evaluation.jobs import machine_info, read_split  # noqa: E402
from models.evaluation.videos import auc_report, score_videos  # noqa: E402
from models.selftrain.config import Window  # noqa: E402
from models.selftrain.trainer import SelfTrainer  # noqa: E402
from workers.bus import keys  # noqa: E402
from workers.config import get_settings, online_config  # noqa: E402
from workers.store.labels import pick_proposals  # noqa: E402

DEFAULT_DATASET = PROJECT_ROOT.parent / "shared" / "datasets" / "ped2"


def cold_start_model(dataset: Path, work: Path, seed: int) -> Path:
    """The model `vigil eval --mode coldstart` ends with (no labels, no trained model to start from)."""
    weights = work / "coldstart.pt"
    command = [sys.executable, "-c", EVAL_RUNNER, "eval", str(dataset), "--mode", "coldstart"]
    command += ["--seed", str(seed), "--save-model", str(weights)]
    subprocess.run(command, check=True, cwd=PROJECT_ROOT)
    return weights


def oracle_labels(truth: np.ndarray, proposals: list[Any]) -> list[tuple[int, int, int]]:
    """(start, end, verdict) for each proposal: the oracle's verdict on the proposed frame, given to it
    and its adjacent frames (as the paper's operator does)."""
    return [(p.start_seq, p.end_seq, int(truth[p.seq])) for p in proposals]


def run_rounds(
    trainer: SelfTrainer,
    frames: dict[str, np.ndarray],
    truth_by_video: dict[str, np.ndarray],
    rounds: int,
    k: int,
    adjacent: int,
    with_feedback: bool,
) -> list[dict[str, Any]]:
    videos = list(frames)
    stacked = np.concatenate([frames[v] for v in videos])
    segments = np.concatenate([np.full(len(frames[v]), i) for i, v in enumerate(videos)])
    truth = np.concatenate([truth_by_video[v] for v in videos])
    labels = np.full(len(stacked), -1)
    history: list[dict[str, Any]] = []

    def evaluate() -> tuple[dict[str, float], np.ndarray]:
        assert trainer.serving is not None
        scored = score_videos(trainer.serving, frames, desc="scoring")
        metrics = auc_report(scored, truth_by_video)
        return metrics, np.concatenate([scored[v].scores for v in videos])

    metrics, scores = evaluate()
    history.append({"round": 0, "micro_auc": metrics["micro_auc"], "labelled_frames": 0})
    print(f"{'feedback' if with_feedback else 'control'} round 0: micro AUC {metrics['micro_auc']:.4f}")
    for number in range(1, rounds + 1):
        started = time.monotonic()
        asked = []
        if with_feedback:
            messages = [
                keys.ScoreMessage(
                    camera="site",
                    seq=i,
                    ts=float(i),
                    frame_id="0-0",
                    score=float(s),
                    raw=0.0,
                    model="",
                    anomalous=False,
                )
                for i, s in enumerate(scores)
            ]
            proposals = pick_proposals(
                messages, set(np.flatnonzero(labels >= 0).tolist()), k=k, adjacent=adjacent
            )
            asked = oracle_labels(truth, proposals.proposals)
            for start, end, verdict in asked:
                labels[start : end + 1] = verdict
        window = Window(stacked, segments, labels.copy() if with_feedback else None)
        result = trainer.cycle(window)
        metrics, scores = evaluate()
        row = {
            "round": number,
            "micro_auc": metrics["micro_auc"],
            "labelled_frames": int((labels >= 0).sum()),
            "labelled_abnormal_frames": int((labels == 1).sum()),
            "asked": [{"frames": [s, e], "abnormal": bool(v)} for s, e, v in asked],
            "accepted": result.accepted,
            "reason": result.reason,
            "ordinal": result.report.get("training", {}).get("ordinal"),
            "seconds": round(time.monotonic() - started, 1),
        }
        history.append(row)
        print(
            f"{'feedback' if with_feedback else 'control'} round {number}: micro AUC {row['micro_auc']:.4f} "
            f"({row['labelled_frames']} frames labelled, cycle {'accepted' if result.accepted else 'refused'}: "
            f"{result.reason})"
        )
    return history


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--model", type=Path, help="start from these weights (default: the cold-start model)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--k", type=int, default=5, help="frames asked about per round")
    parser.add_argument("--adjacent", type=int, default=5, help="frames on each side labelled with each")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    settings = get_settings()
    results: dict[str, Any] = {
        "machine": machine_info(),
        "dataset": str(args.dataset),
        "rounds": args.rounds,
        "k": args.k,
        "adjacent": args.adjacent,
        "seed": args.seed,
    }
    with tempfile.TemporaryDirectory() as tmp_dir:
        work = Path(tmp_dir)
        weights = (
            args.model.with_suffix(".pt") if args.model else cold_start_model(args.dataset, work, args.seed)
        )
        results["start_model"] = str(args.model) if args.model else "coldstart"
        start = load_detector(weights, "cpu")
        _, frames = read_split(args.dataset, "testing", start.info.height, start.info.width)
        truth = datasets.load_labels(args.dataset, frames)
        if truth is None:
            raise SystemExit(f"{args.dataset}: no labels.json, nothing to simulate the operator with")
        for name, with_feedback in (("feedback", True), ("control", False)):
            trainer = SelfTrainer(
                online_config(settings, seed=args.seed),
                work / name,
                model=start.model,
                metadata=start.info.metadata,
            )
            results[name] = run_rounds(
                trainer, frames, truth, args.rounds, args.k, args.adjacent, with_feedback
            )
    feedback, control = results["feedback"], results["control"]
    results["gain_over_start"] = feedback[-1]["micro_auc"] - feedback[0]["micro_auc"]
    results["gain_over_control"] = feedback[-1]["micro_auc"] - control[-1]["micro_auc"]
    out = write_report(results, "feedback", args.out)
    print("\n| round | with feedback | control (same cycles, no labels) | frames labelled |")
    print("| --- | --- | --- | --- |")
    for with_labels, without in zip(feedback, control, strict=True):
        print(
            f"| {with_labels['round']} | {with_labels['micro_auc']:.4f} | {without['micro_auc']:.4f} | "
            f"{with_labels['labelled_frames']} |"
        )
    print(
        f"\nafter {args.rounds} rounds: {results['gain_over_start']:+.4f} over the start, "
        f"{results['gain_over_control']:+.4f} over the control\nwritten to {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
