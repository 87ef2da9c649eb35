"""Alert quality of a scored dataset under other alert settings: the event metrics of `vigil eval` recomputed
from its --scores-out CSV (the same hysteresis, models/scoring/hysteresis.py) over a grid of thresholds,
cooldowns and CUSUM parameters, to show what an operator would get from each and where the targets stand.

    python benchmarks/bench_alerts.py DATASET_DIR SCORES.csv [--thresholds 0.3,0.4,0.5] [--cooldowns 0,10]
        [--cusum-references 0.15,0.2 --cusum-limits 1,2]

Each threshold is measured with the threshold rule alone and with Page's CUSUM over every reference and
limit given. Where the dataset has test videos with no abnormal frame (a mostly normal stream, see
bench_feedback.py stream-dataset), each row also counts the alerts over those videos played back to back
as one camera: a video-by-video run starts every video afresh, which hides evidence summed over longer
normal footage. Writes benchmarks/results/alerts-sweep-<machine>-<date>.json (or --out) and prints one row
per setting.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from benchmarks.harness import write_report  # noqa: E402
from models.evaluation import datasets as data  # noqa: E402
from models.evaluation.jobs import alert_quality  # noqa: E402
from models.evaluation.videos import VideoScores  # noqa: E402
from models.scoring.hysteresis import HysteresisConfig, episodes  # noqa: E402
from workers.config import get_settings, hysteresis_config  # noqa: E402


def read_scores(path: Path) -> dict[str, VideoScores]:
    rows: dict[str, list[float]] = {}
    with path.open() as source:
        for row in csv.DictReader(source):
            rows.setdefault(row["video"], []).append(float(row["score"]))
    return {name: VideoScores(raw=np.array(s), scores=np.array(s)) for name, s in rows.items()}


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def rules(base: HysteresisConfig, references: list[float], limits: list[float]) -> list[HysteresisConfig]:
    """The threshold rule alone, then with the CUSUM at every reference and limit."""
    off = replace(base, cusum_reference=0.0, cusum_limit=0.0)
    return [off] + [replace(base, cusum_reference=k, cusum_limit=h) for k in references for h in limits]


def normal_run_alerts(normal: list[np.ndarray], config: HysteresisConfig, fps: float) -> int | None:
    """Alerts over the all-normal videos played back to back as one camera (None: the dataset has none)."""
    return len(episodes(np.concatenate(normal), config, fps)) if normal else None


def measure(
    dataset: Path,
    scores: dict[str, VideoScores],
    labels: dict[str, np.ndarray],
    config: HysteresisConfig,
) -> dict[str, Any]:
    events, _ = alert_quality(dataset, scores, labels, config)
    assert events is not None, "the dataset has no labels.json"
    normal = [scores[name].scores for name in sorted(scores) if not labels[name].any()]
    return {
        "cooldown_s": config.cooldown_s,
        "cusum_reference": config.cusum_reference,
        "cusum_limit": config.cusum_limit,
        **events,
        "normal_videos_s": sum(len(s) for s in normal) / events["fps"],
        "normal_run_alerts": normal_run_alerts(normal, config, events["fps"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("scores", type=Path)
    parser.add_argument("--thresholds", type=floats, default=None, help="default: the setting's")
    parser.add_argument("--cooldowns", type=floats, default=None, help="default: 0 and the setting's")
    parser.add_argument("--cusum-references", type=floats, default=[], help="CUSUM references k")
    parser.add_argument("--cusum-limits", type=floats, default=[], help="CUSUM decision limits h")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    alerts = get_settings().alerts
    scores = read_scores(args.scores)
    labels = data.load_labels(args.dataset, {name: video.scores for name, video in scores.items()})
    assert labels is not None, "the dataset has no labels.json"
    fps = data.dataset_fps(args.dataset)
    rows = []
    for threshold in args.thresholds or [alerts.threshold]:
        for cooldown in args.cooldowns or sorted({0.0, alerts.cooldown_s}):
            base = replace(hysteresis_config(alerts, threshold, fps=fps), cooldown_s=cooldown)
            for config in rules(base, args.cusum_references, args.cusum_limits):
                row = measure(args.dataset, scores, labels, config)
                rows.append(row)
                cusum = (
                    f"cusum {config.cusum_reference:.2f}/{config.cusum_limit:.1f}"
                    if config.cusum_limit
                    else ""
                )
                print(
                    f"threshold {threshold:.2f} cooldown {cooldown:4.0f} s {cusum}: recall {row['event_recall']}, "
                    f"precision {row['alert_precision']}, false/h {row['false_alerts_per_hour']:.1f}, "
                    f"delay median {row['delay_median_s']} s p90 {row['delay_p90_s']} s"
                    + (
                        f", normal run {row['normal_run_alerts']}"
                        if row["normal_run_alerts"] is not None
                        else ""
                    )
                )
    report = {"dataset": str(args.dataset), "scores": str(args.scores), "rows": rows}
    print(write_report(report, "alerts-sweep", args.out))


if __name__ == "__main__":
    main()
