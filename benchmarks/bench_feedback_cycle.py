"""'This is normal here' through the retraining cycle the worker runs, not the learning step alone.

`bench_feedback.py normal-here` teaches each arm's model the marked alerts' frames directly. Here the same
operator (the first 5 alerts whose events are of the accepted class alone, marked normal with the class)
labels a camera's window, and one cycle of the retraining worker's loop runs over it
(models/selftrain/trainer.SelfTrainer.cycle: mining, adaptation, validation, the ONNX file written and
loaded back): the window is the test videos up to the last marked one, played as one camera, labelled as
`POST /api/feedback` labels an alert's frames with a category. The rest of the stream is then scored by
the model the cycle serves, against the start model's scores (the control).

    python benchmarks/bench_feedback_cycle.py DATASET MODEL.pt --categories C.json --accept bicycle \
        [--control-scores S.csv]

Writes benchmarks/results/feedback-normal-here-cycle-*.json.
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

from benchmarks.bench_feedback import control_scores, operator_inputs  # noqa: E402
from benchmarks.event_classes import class_summary, event_classes, marked_of_class  # noqa: E402
from benchmarks.harness import write_report  # noqa: E402
from models.evaluation import datasets  # noqa: E402
from models.evaluation.events import VideoAlert, raise_alerts  # noqa: E402
from models.evaluation.jobs import machine_info  # noqa: E402
from models.evaluation.videos import score_videos  # noqa: E402
from models.selftrain.config import OnlineConfig, Window  # noqa: E402
from models.selftrain.feedback import kind_key  # noqa: E402
from models.selftrain.trainer import SelfTrainer, concat_windows  # noqa: E402
from workers.config import get_settings, hysteresis_config  # noqa: E402


def labelled_window(
    frames: dict[str, np.ndarray], videos: list[str], marked: list[VideoAlert], kind: str
) -> Window:
    """The videos one after another as one camera's window (history restarts at each), the marked alerts'
    frames labelled normal with the category `kind` (a kind the site accepts)."""
    parts = []
    for video in videos:
        labels = np.full(len(frames[video]), -1)
        for alert in (a for a in marked if a.video == video):
            labels[alert.episode.start_seq : alert.episode.last_seq + 1] = 0
        kinds = np.where(labels == 0, kind_key(kind), 0)
        parts.append(Window(frames[video], np.zeros(len(labels), dtype=int), labels, kinds))
    return concat_windows(parts)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dataset", type=Path)
    parser.add_argument("model", type=Path, help="the start model's PyTorch weights (.pt)")
    parser.add_argument("--categories", type=Path, required=True, help="event classes per range (JSON)")
    parser.add_argument("--accept", default="bicycle", help="the class the site accepts")
    parser.add_argument("--control-scores", type=Path, help="the start model's `vigil eval --scores-out` CSV")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    start, frames, labels = operator_inputs(parser, args.dataset, args.model)
    fps = datasets.dataset_fps(args.dataset)
    config = hysteresis_config(get_settings().alerts, fps=fps)
    classes = event_classes(args.categories)
    names = list(frames)
    with tempfile.TemporaryDirectory(prefix="bench-feedback-cycle-") as tmp:
        work = Path(tmp)
        control = control_scores(args.control_scores, start, frames, work, fps)
        marked = marked_of_class(raise_alerts(control, config, fps), classes, args.accept)
        split = names.index(marked[-1].video) + 1
        taught, later = names[:split], names[split:]
        window = labelled_window(frames, taught, marked, args.accept)
        trainer = SelfTrainer(
            OnlineConfig(), work, model=start.model, metadata={**start.info.metadata, "version": "start"}
        )
        print(
            f"one cycle over {len(window)} frames of {len(taught)} videos, {len(marked)} alerts marked",
            flush=True,
        )
        result = trainer.cycle(window)
        print(f"cycle: {'accepted' if result.accepted else 'refused'}: {result.reason}", flush=True)
        assert trainer.serving is not None
        after = score_videos(trainer.serving, {v: frames[v] for v in later}, desc="after the cycle", fps=fps)

    def summary(scores: dict[str, Any]) -> dict[str, Any]:
        alerts = raise_alerts(scores, config, fps)
        return class_summary(
            alerts, classes, args.accept, {v: labels[v] for v in later}, fps, config.threshold
        )

    report = {
        "benchmark": "normal-here-cycle",
        "machine": machine_info(),
        "dataset": str(args.dataset),
        "model": str(args.model),
        "threshold": config.threshold,
        "accepted": args.accept,
        "marked_normal": [[a.video, a.episode.start_seq, a.episode.last_seq] for a in marked],
        "window_videos": taught,
        "later_videos": later,
        "cycle": {"accepted": result.accepted, "reason": result.reason, "report": result.report},
        "control": summary({v: control[v] for v in later}),
        "after": summary(after),
    }
    for name in ("control", "after"):
        part = report[name]
        print(
            f"{name}: later alerts of '{args.accept}' {part['later_alerts_of_class']}, other classes "
            f"{part['other_classes']['detected']} of {part['other_classes']['events']}",
            flush=True,
        )
    print(write_report(report, "feedback-normal-here-cycle", args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
