"""Operator feedback in alerts: does marking alerts normal make the wrong ones stop? Two simulated operators,
labels.json as the oracle, alerts raised by the service's hysteresis (models/scoring/hysteresis.py) at the
service's threshold on the service's causal scores, each against a no-feedback control in the same report.

    python benchmarks/bench_feedback.py stream-dataset ../shared/datasets/ped1 STREAM --fitted 6
    vigil train STREAM --train-videos 6 --out M          # M.onnx and M.pt
    vigil eval STREAM --model M.onnx --scores-out S.csv  # the control's scores (optional)
    python benchmarks/bench_feedback.py false-alerts STREAM M.pt [--control-scores S.csv]
    python benchmarks/bench_feedback.py normal-here DATASET MODEL.pt --categories C.json --accept bicycle

false-alerts: DATASET/testing is a stream that is mostly normal (test videos with training videos held out of
the fit between them, in name order). Its first half is streamed in 5 rounds: in each the operator marks up
to 5 false alerts (alerts over no abnormal frame) normal, as `POST /api/feedback` with the alert's id labels
its frames, and the model learns the labelled frames (models/selftrain/feedback.py, which a retraining
cycle applies to the labels of its window). The second half is then scored by the model so taught and by
the start model (the control): false alerts per hour of its normal footage, event recall.

normal-here: the site accepts one event class. The operator marks the first 5 alerts whose events are of
that class only (from --categories, made by eye) normal; the model learns them; the rest of the stream is
scored by it and by the control: later alerts of the class, and the event recall of the other classes.

Each mechanism in --mechanisms is one arm: `memory` (the labelled frames' cells join the appearance memory),
`memory+motion` (and the normal speed raised at their hot spots), `cell-exception` (the labelled frames'
most anomalous cells kept, and cells that look and move like them taken out of the maps the frame score
is taken from: models/detector/exception.py), and two that change no score: `exception` (alerts that look
like a labelled one at their peak do not page) and `threshold` (the camera's threshold raised by the labels:
models/scoring/label_threshold.py). The threshold is the service's (VIGIL_ALERTS__THRESHOLD, and
__LABEL_CEILING). Writes benchmarks/results/feedback-<benchmark>-*.json.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from benchmarks.bench_alerts import read_scores  # noqa: E402
from benchmarks.event_classes import (  # noqa: E402
    PER_ROUND,
    class_summary,
    event_classes,
    marked_of_class,
    overlaps_any,
)
from benchmarks.harness import write_report  # noqa: E402
from benchmarks.stream_dataset import write_stream_dataset  # noqa: E402
from models.detector.base import Detector  # noqa: E402
from models.detector.export import model_metadata, save_detector  # noqa: E402
from models.detector.runtime import TorchDetector, load_detector  # noqa: E402
from models.detector.scores import anomaly_maps  # noqa: E402
from models.evaluation import datasets  # noqa: E402
from models.evaluation.events import (  # noqa: E402
    VideoAlert,
    event_report,
    raise_alerts,
    true_ranges,
)
from models.evaluation.jobs import machine_info, read_split  # noqa: E402
from models.evaluation.videos import VideoScores, score_videos  # noqa: E402
from models.scoring.camera import padded_clips  # noqa: E402
from models.scoring.hysteresis import HysteresisConfig  # noqa: E402
from models.scoring.label_threshold import label_threshold  # noqa: E402
from models.selftrain.categories import alert_descriptor  # noqa: E402
from models.selftrain.config import LabelLearning  # noqa: E402
from models.selftrain.feedback import evenly_spread, learn_labelled_normal  # noqa: E402
from workers.config import get_settings, hysteresis_config  # noqa: E402

ROUNDS = 5
MECHANISMS = {
    "memory": LabelLearning(motion_exception=False, accepted_exception=False),
    "memory+motion": LabelLearning(motion_exception=True, accepted_exception=False),
    "cell-exception": LabelLearning(memory=False, cell_exception=True),
}
CELL_EXCEPTION = "cell-exception"
EXCEPTION = "exception"  # measured here only: see Exceptions
THRESHOLD = "threshold"  # labels raise the camera's threshold: see LabelThreshold


def labelled_clips(frames: dict[str, np.ndarray], alerts: list[VideoAlert], history: int) -> np.ndarray:
    """The frames an alert-id label covers (start_seq..last_seq), each with its past as the camera saw it."""
    if not alerts:
        return np.zeros((0, history + 1, *next(iter(frames.values())).shape[1:]), np.uint8)
    parts = [
        padded_clips(frames[a.video], np.arange(a.episode.start_seq, a.episode.last_seq + 1), history)
        for a in alerts
    ]
    return np.concatenate(parts)


class Arm:
    """A model that learns from the operator's labels, served as the service serves it (ONNX)."""

    def __init__(self, name: str, start: TorchDetector, learning: LabelLearning, work: Path) -> None:
        self.name, self.learning, self.work = name, learning, work
        self.model = copy.deepcopy(start.model)
        self.metadata = dict(start.info.metadata)
        self.learned: list[dict[str, Any]] = []
        self.detector: Detector = start

    def learn(
        self,
        frames: dict[str, np.ndarray],
        alerts: list[VideoAlert],
        history: int,
        category: str | None = None,
    ) -> None:
        """Learns the frames the alerts cover, labelled normal, with `category` when the operator gave one
        (with the event each frame belongs to and the anomaly maps of the detector that raised them, for
        the per-cell exception)."""
        clips = labelled_clips(frames, alerts, history)
        if len(clips) == 0:
            return
        started = time.monotonic()
        events = np.repeat(
            np.arange(len(alerts)), [a.episode.last_seq - a.episode.start_seq + 1 for a in alerts]
        )
        picks = evenly_spread(np.arange(len(clips)), self.learning.max_frames)  # before the maps: their cost
        clips, events = clips[picks], events[picks]
        anomaly = (
            anomaly_maps(self.detector, self.detector.stream_maps(clips))
            if self.learning.cell_exception or (self.learning.accepted_exception and category is not None)
            else None
        )
        accepted = np.full(len(clips), category is not None)
        appearance_normal = self.metadata.get("stream_stats", {}).get("appearance")
        report = learn_labelled_normal(
            self.model, clips, self.learning, events, anomaly, accepted, appearance_normal
        )
        report["seconds"] = round(time.monotonic() - started, 1)
        self.learned.append(report)
        path = self.work / f"{self.name}-{len(self.learned)}.onnx"
        save_detector(self.model, {**self.metadata, **model_metadata(self.model.config, {})}, path)
        self.detector = load_detector(path, "cpu")
        print(f"  {self.name} learned {report}", flush=True)


class Exceptions:
    """The alternative that changes no score: an alert whose peak looks like one labelled normal (its
    descriptor, models/selftrain/categories.alert_descriptor, as close to one of them as they typically are
    to each other) would not page."""

    def __init__(self, start: TorchDetector, frames: dict[str, np.ndarray], fps: float) -> None:
        self.start, self.frames = start, frames
        self.exemplars: list[np.ndarray] = []
        self.config = hysteresis_config(get_settings().alerts, fps=fps)

    def describe(self, alert: VideoAlert) -> np.ndarray:
        history = self.start.info.history
        clip = padded_clips(self.frames[alert.video], np.array([alert.episode.peak_seq]), history)
        anomaly = anomaly_maps(self.start, self.start.stream_maps(clip))[0]
        return alert_descriptor(self.start.model, clip[0], anomaly)

    def learn(self, alerts: list[VideoAlert], category: str | None = None) -> None:
        self.exemplars += [self.describe(a) for a in alerts]  # whatever they are: their looks

    def reach(self) -> float:
        """The median distance from a labelled descriptor to its nearest other one: how close to one of
        them an alert must look to be taken for its kind."""
        if len(self.exemplars) < 2:
            return 0.0
        points = np.stack(self.exemplars)
        distances = np.linalg.norm(points[:, None] - points[None], axis=2)
        np.fill_diagonal(distances, np.inf)
        return float(np.median(distances.min(1)))

    def pages(self, alerts: list[VideoAlert]) -> list[VideoAlert]:
        if not self.exemplars:
            return alerts
        points, reach = np.stack(self.exemplars), self.reach()
        return [a for a in alerts if np.linalg.norm(points - self.describe(a)[None], axis=1).min() > reach]

    def summary(self) -> dict[str, Any]:
        return {"exemplars": len(self.exemplars), "reach": self.reach()}


class LabelThreshold:
    """The alternative that changes no score: alerts marked normal (no category: a false alert) raise the
    camera's threshold to just above their peak, up to the ceiling (models/scoring/label_threshold.py, as
    the inference worker applies it)."""

    def __init__(self, fps: float) -> None:
        self.fps = fps
        self.marked_peaks: list[float] = []
        self.config = hysteresis_config(get_settings().alerts, fps=fps)

    def learn(self, alerts: list[VideoAlert], category: str | None = None) -> None:
        if category is not None:  # a kind accepted at the site, not a false alert: no threshold moves
            return
        self.marked_peaks += [a.episode.peak_score for a in alerts]
        alerts_settings = get_settings().alerts
        asked = label_threshold(self.marked_peaks, [], alerts_settings.label_ceiling)
        self.config = hysteresis_config(alerts_settings, labelled=asked, fps=self.fps)

    def pages(self, alerts: list[VideoAlert]) -> list[VideoAlert]:
        return alerts

    def summary(self) -> dict[str, Any]:
        return {"marked_peaks": self.marked_peaks, "threshold_after": self.config.threshold}


UnscoredArm = Exceptions | LabelThreshold


def alert_report(
    scores: dict[str, VideoScores], labels: dict[str, np.ndarray], config: HysteresisConfig, fps: float
) -> tuple[dict[str, Any], list[VideoAlert]]:
    """Event metrics of the alerts the service's hysteresis raises on `scores` (its videos only)."""
    alerts = raise_alerts(scores, config, fps)
    report = event_report(alerts, {v: labels[v] for v in scores}, fps, config.threshold)
    report["alert_list"] = [[a.video, a.episode.start_seq, a.episode.last_seq] for a in alerts]
    return report, alerts


def control_scores(
    path: Path | None, start: TorchDetector, frames: dict[str, np.ndarray], work: Path, fps: float
) -> dict[str, VideoScores]:
    """The start model's scores: from `vigil eval --scores-out` of the same model when given."""
    if path is None:
        served = work / "start.onnx"
        save_detector(start.model, start.info.metadata, served)
        return score_videos(load_detector(served, "cpu"), frames, desc="control", fps=fps)
    scores = read_scores(path)
    missing = sorted(set(frames) - set(scores))
    if missing:
        raise SystemExit(f"{path}: no scores for {missing}")
    return {v: scores[v] for v in frames}


def alert_rule(dataset: Path) -> tuple[HysteresisConfig, float]:
    """The service's alert hysteresis at the dataset's frame rate, and the rate."""
    fps = datasets.dataset_fps(dataset)
    return hysteresis_config(get_settings().alerts, fps=fps), fps


# ---------------------------------------------------------------- false alerts
def false_alerts(
    args: argparse.Namespace,
    start: TorchDetector,
    frames: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
) -> dict[str, Any]:
    config, fps = alert_rule(args.dataset)
    names = list(frames)
    taught, held = names[: len(names) // 2], names[len(names) // 2 :]
    rounds = [list(part) for part in np.array_split(np.array(taught), ROUNDS)]
    control = control_scores(args.control_scores, start, frames, args.work, fps)
    report: dict[str, Any] = {
        "taught_videos": taught,
        "after_videos": held,
        "control": {
            "taught": alert_report({v: control[v] for v in taught}, labels, config, fps)[0],
            "after": alert_report({v: control[v] for v in held}, labels, config, fps)[0],
        },
        "arms": {},
    }
    for name in args.mechanisms:
        if unscored := unscored_arm(name, start, frames, fps):
            report["arms"][name] = false_alerts_unscored(unscored, labels, rounds, held, control, fps)
            print_against(name, report["arms"][name]["after"], report["control"]["after"])
            continue
        arm = Arm(name, start, MECHANISMS[name], args.work)
        history = []
        for number, videos in enumerate(rounds, start=1):
            round_scores = (
                {v: control[v] for v in videos}  # nothing learned yet: the start model's scores
                if not arm.learned
                else score_videos(
                    arm.detector, {v: frames[v] for v in videos}, desc=f"{name} round {number}", fps=fps
                )
            )
            alerts = raise_alerts(round_scores, config, fps)
            wrong = [a for a in alerts if not overlaps_any(a, true_ranges(labels[a.video]))][:PER_ROUND]
            history.append(
                {
                    "round": number,
                    "videos": videos,
                    "alerts": len(alerts),
                    "marked_normal": [[a.video, a.episode.start_seq, a.episode.last_seq] for a in wrong],
                }
            )
            print(f"{name} round {number}: {len(alerts)} alerts, {len(wrong)} marked normal", flush=True)
            arm.learn(frames, wrong, start.info.history)
        after = score_videos(
            arm.detector, {v: frames[v] for v in held}, desc=f"{name} after the rounds", fps=fps
        )
        result = alert_report(after, labels, config, fps)[0]
        report["arms"][name] = {"rounds": history, "learned": arm.learned, "after": result}
        print_against(name, result, report["control"]["after"])
    return report


def false_alerts_unscored(
    arm: UnscoredArm,
    labels: dict[str, np.ndarray],
    rounds: list[list[str]],
    held: list[str],
    control: dict[str, VideoScores],
    fps: float,
) -> dict[str, Any]:
    """The rounds of an arm that changes no score: alerts of the control's scores, as the arm pages them."""
    history = []
    for number, videos in enumerate(rounds, start=1):
        paged = arm.pages(raise_alerts({v: control[v] for v in videos}, arm.config, fps))
        wrong = [a for a in paged if not overlaps_any(a, true_ranges(labels[a.video]))][:PER_ROUND]
        history.append({"round": number, "videos": videos, "alerts": len(paged), "marked_normal": len(wrong)})
        arm.learn(wrong)
    paged = arm.pages(raise_alerts({v: control[v] for v in held}, arm.config, fps))
    after = event_report(paged, {v: labels[v] for v in held}, fps, arm.config.threshold)
    return {"rounds": history, **arm.summary(), "after": after}


def unscored_arm(
    name: str, start: TorchDetector, frames: dict[str, np.ndarray], fps: float
) -> UnscoredArm | None:
    if name == EXCEPTION:
        return Exceptions(start, frames, fps)
    return LabelThreshold(fps) if name == THRESHOLD else None


def print_against(name: str, arm: dict[str, Any], control: dict[str, Any]) -> None:
    print(
        f"{name}: false alerts/h {arm['false_alerts_per_hour']:.1f} (control {control['false_alerts_per_hour']:.1f}), "
        f"event recall {arm['event_recall']:.3f} (control {control['event_recall']:.3f}), "
        f"precision {arm['alert_precision']} (control {control['alert_precision']})",
        flush=True,
    )


# ---------------------------------------------------------------- this is normal here
def normal_here(
    args: argparse.Namespace,
    start: TorchDetector,
    frames: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
) -> dict[str, Any]:
    config, fps = alert_rule(args.dataset)
    classes = event_classes(args.categories)
    accepted = args.accept
    names = list(frames)
    control = control_scores(args.control_scores, start, frames, args.work, fps)
    _, control_alerts = alert_report(control, labels, config, fps)
    marked = marked_of_class(control_alerts, classes, accepted)
    last = marked[-1]
    later = names[names.index(last.video) + 1 :]  # the stream after the video of the fifth label

    def summary(alerts: list[VideoAlert]) -> dict[str, Any]:
        return class_summary(alerts, classes, accepted, {v: labels[v] for v in later}, fps, config.threshold)

    report: dict[str, Any] = {
        "accepted": accepted,
        "marked_normal": [[a.video, a.episode.start_seq, a.episode.last_seq] for a in marked],
        "later_videos": later,
        "control": summary(raise_alerts({v: control[v] for v in later}, config, fps)),
        "arms": {},
    }
    for name in args.mechanisms:
        if unscored := unscored_arm(name, start, frames, fps):
            unscored.learn(marked, category=accepted)
            result = summary(
                unscored.pages(raise_alerts({v: control[v] for v in later}, unscored.config, fps))
            )
            report["arms"][name] = {**unscored.summary(), **result}
        else:
            arm = Arm(name, start, MECHANISMS[name], args.work)
            arm.learn(frames, marked, start.info.history, category=accepted)
            after = score_videos(
                arm.detector, {v: frames[v] for v in later}, desc=f"{name} after the labels", fps=fps
            )
            result = summary(raise_alerts(after, config, fps))
            report["arms"][name] = {"learned": arm.learned, **result}
        ctrl = report["control"]
        print(
            f"{name}: later alerts of '{accepted}' {result['later_alerts_of_class']} "
            f"(control {ctrl['later_alerts_of_class']}), other classes' recall "
            f"{result['other_classes']['recall']} (control {ctrl['other_classes']['recall']})",
            flush=True,
        )
    return report


def operator_inputs(
    parser: argparse.ArgumentParser, dataset: Path, model: Path
) -> tuple[TorchDetector, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The start model (PyTorch weights, which labels can teach), the test videos and their labels (the
    simulated operator's oracle)."""
    start = load_detector(model, "cpu")
    if not isinstance(start, TorchDetector):
        parser.error(f"{model}: PyTorch weights (.pt) needed, to learn from the labels")
    _, frames = read_split(dataset, "testing", start.info.height, start.info.width)
    labels = datasets.load_labels(dataset, frames)
    if labels is None:
        raise SystemExit(f"{dataset}: no labels.json, nothing to simulate the operator with")
    return start, frames, labels


def settings_overrides(text: str) -> dict[str, Any]:
    """KEY=VALUE,... of LabelLearning fields, each of its field's type."""
    defaults = LabelLearning()
    out: dict[str, Any] = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        if not hasattr(defaults, key):
            raise argparse.ArgumentTypeError(f"{key}: not a LabelLearning setting")
        kind = type(getattr(defaults, key))
        out[key] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("benchmark", choices=["false-alerts", "normal-here", "stream-dataset"])
    parser.add_argument("dataset", type=Path)
    parser.add_argument(
        "model", type=Path, help="the start model's PyTorch weights (.pt); stream-dataset: OUT_DIR"
    )
    parser.add_argument(
        "--fitted", type=int, default=6, help="stream-dataset: training videos kept for the fit"
    )
    parser.add_argument(
        "--every", type=int, default=3, help="stream-dataset: test videos between held-out ones"
    )
    parser.add_argument("--control-scores", type=Path, help="the start model's `vigil eval --scores-out` CSV")
    parser.add_argument("--categories", type=Path, help="normal-here: event classes per range (JSON)")
    parser.add_argument("--accept", default="bicycle", help="normal-here: the class the site accepts")
    parser.add_argument(
        "--mechanisms", type=lambda t: t.split(","), default=[THRESHOLD, EXCEPTION, *MECHANISMS]
    )
    parser.add_argument(
        "--cell-exception",
        type=settings_overrides,
        default={},
        help="the cell-exception arm's LabelLearning settings, e.g. exception_reach_quantile=0.25,exception_spread=0",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    MECHANISMS[CELL_EXCEPTION] = replace(MECHANISMS[CELL_EXCEPTION], **args.cell_exception)
    if args.benchmark == "stream-dataset":
        write_stream_dataset(args.dataset, args.model, args.fitted, args.every)
        print(f"wrote {args.model}")
        return 0
    args.work = Path(tempfile.mkdtemp(prefix="bench-feedback-"))
    unknown = set(args.mechanisms) - {THRESHOLD, EXCEPTION, *MECHANISMS}
    if unknown:
        parser.error(f"unknown mechanisms {sorted(unknown)}; known: {sorted(MECHANISMS)}")
    if args.benchmark == "normal-here" and args.categories is None:
        parser.error("normal-here needs --categories")
    start, frames, labels = operator_inputs(parser, args.dataset, args.model)
    config, _ = alert_rule(args.dataset)
    report = {
        "benchmark": args.benchmark,
        "machine": machine_info(),
        "dataset": str(args.dataset),
        "model": str(args.model),
        "threshold": config.threshold,
        "cooldown_s": config.cooldown_s,
        "rounds": ROUNDS,
        "per_round": PER_ROUND,
        "mechanisms": {
            name: MECHANISMS[name].to_dict() if name in MECHANISMS else {} for name in args.mechanisms
        },
    }
    run = false_alerts if args.benchmark == "false-alerts" else normal_here
    try:
        report.update(run(args, start, frames, labels))
    finally:
        shutil.rmtree(args.work, ignore_errors=True)
    print(write_report(report, f"feedback-{args.benchmark}", args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
