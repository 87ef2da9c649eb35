"""Alert quality of a scored dataset under other alert settings: the event metrics of `vigil eval` recomputed
from its --scores-out CSV (the same hysteresis, models/scoring/hysteresis.py) over a grid of thresholds and
cooldowns, to show what an operator would get from each and where the targets stand.

    python benchmarks/bench_alerts.py DATASET_DIR SCORES.csv [--thresholds 0.3,0.4,0.5] [--cooldowns 0,10]

Writes benchmarks/results/alerts-sweep-<machine>-<date>.json (or --out) and prints one row per setting.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from benchmarks.harness import write_report  # noqa: E402
from models.evaluation import datasets as data  # noqa: E402
from models.evaluation.jobs import alert_quality  # noqa: E402
from models.evaluation.videos import VideoScores  # noqa: E402
from workers.config import get_settings, hysteresis_config  # noqa: E402


def read_scores(path: Path) -> dict[str, VideoScores]:
    rows: dict[str, list[float]] = {}
    with path.open() as source:
        for row in csv.DictReader(source):
            rows.setdefault(row["video"], []).append(float(row["score"]))
    return {name: VideoScores(raw=np.array(s), scores=np.array(s)) for name, s in rows.items()}


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("scores", type=Path)
    parser.add_argument("--thresholds", type=floats, default=None, help="default: the setting's")
    parser.add_argument("--cooldowns", type=floats, default=None, help="default: 0 and the setting's")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    alerts = get_settings().alerts
    scores = read_scores(args.scores)
    labels = data.load_labels(args.dataset, {name: video.scores for name, video in scores.items()})
    rows = []
    for threshold in args.thresholds or [alerts.threshold]:
        for cooldown in args.cooldowns or sorted({0.0, alerts.cooldown_s}):
            config = replace(hysteresis_config(alerts, threshold), cooldown_s=cooldown)
            events, _ = alert_quality(args.dataset, scores, labels, config)
            assert events is not None, "the dataset has no labels.json"
            rows.append({"cooldown_s": cooldown, **events})
            print(
                f"threshold {threshold:.2f} cooldown {cooldown:4.0f} s: recall {events['event_recall']}, "
                f"precision {events['alert_precision']}, false/h {events['false_alerts_per_hour']:.1f}, "
                f"delay median {events['delay_median_s']} s p90 {events['delay_p90_s']} s"
            )
    report = {"dataset": str(args.dataset), "scores": str(args.scores), "rows": rows}
    print(write_report(report, "alerts-sweep", args.out))


if __name__ == "__main__":
    main()
