import csv
import json
from pathlib import Path

import numpy as np
import pytest

from models.evaluation.datasets import DatasetError, dataset_fps
from models.evaluation.events import event_report, raise_alerts, ranges_report, true_ranges, write_alerts_csv
from models.evaluation.videos import VideoScores
from models.scoring.hysteresis import Episode, HysteresisConfig
from workers.ingest.clips import write_clip

CONFIG = HysteresisConfig(threshold=0.5, start_frames=3, end_frames=2, update_interval_s=0.0)


def scored(values: list[float]) -> VideoScores:
    array = np.array(values, dtype=np.float32)
    return VideoScores(raw=array, scores=array)


def flags(n: int, *ranges: tuple[int, int]) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    for start, end in ranges:
        out[start : end + 1] = True
    return out


def test_true_ranges_are_inclusive_runs() -> None:
    assert true_ranges(flags(10, (0, 1), (4, 6), (9, 9))) == [(0, 1), (4, 6), (9, 9)]
    assert true_ranges(np.zeros(4, dtype=bool)) == []


def test_event_metrics_on_constructed_scores() -> None:
    low, high = 0.1, 0.9
    # video a: event [10, 29] caught 5 frames late (opens at 17), event [40, 49] missed, a false alert at 60
    a = [low] * 15 + [high] * 10 + [low] * 35 + [high] * 5 + [low] * 5
    # video b: event [0, 9] caught at once (opens at 2), no false alerts
    b = [high] * 10 + [low] * 30
    scores = {"a": scored(a), "b": scored(b)}
    labels = {"a": flags(len(a), (10, 29), (40, 49)), "b": flags(len(b), (0, 9))}
    alerts = raise_alerts(scores, CONFIG, fps=10)
    assert [(x.video, x.episode.start_seq, x.episode.last_seq) for x in alerts] == [
        ("a", 15, 24),
        ("a", 60, 64),
        ("b", 0, 9),
    ]
    report = event_report(alerts, labels, fps=10, threshold=CONFIG.threshold)
    assert report["events"] == 3 and report["alerts"] == 3 and report["false_alerts"] == 1
    assert report["event_recall"] == pytest.approx(2 / 3)
    assert report["alert_precision"] == pytest.approx(2 / 3)
    normal_frames = (len(a) - 30) + (len(b) - 10)
    assert report["false_alerts_per_hour"] == pytest.approx(1 / (normal_frames / 10 / 3600))
    # delays 0.7 s (opened at frame 17 for an event starting at 10) and 0.2 s
    assert report["delay_median_s"] == pytest.approx(0.45)
    assert report["delay_p90_s"] == pytest.approx(0.65)


def test_ranges_that_touch_are_two_events() -> None:
    # a camera playing two videos back to back: one ends in an event at frame 19, the next begins with one
    spanning = Episode(
        start_seq=15, start_ts=1.5, opened_seq=17, last_seq=24, peak_score=0.9, peak_seq=20, peak_ts=2.0
    )
    report = ranges_report({"cam": [spanning]}, {"cam": [(10, 19), (20, 29)]}, 20, fps=10.0, threshold=0.5)
    assert (report["events"], report["alerts"], report["event_recall"], report["alert_precision"]) == (
        2,
        1,
        1.0,
        1.0,
    )
    assert report["delay_median_s"] == pytest.approx(0.35)  # 0.7 s into the first, 0 into the second
    assert report["false_alerts_per_hour"] == 0.0


def test_no_alerts_no_events() -> None:
    report = event_report([], {"a": flags(20)}, fps=10, threshold=0.5)
    assert report["event_recall"] is None and report["alert_precision"] is None
    assert report["false_alerts_per_hour"] == 0 and report["delay_median_s"] is None


def test_alerts_csv(tmp_path: Path) -> None:
    alerts = raise_alerts({"v1": scored([0.9] * 4 + [0.1] * 3)}, CONFIG, fps=10)
    path = tmp_path / "out" / "alerts.csv"
    write_alerts_csv(alerts, path)
    rows = list(csv.DictReader(path.open()))
    assert rows == [{"video": "v1", "start_frame": "0", "end_frame": "3", "peak_score": "0.9000000"}]


def test_dataset_fps(tmp_path: Path) -> None:
    assert dataset_fps(tmp_path) == 10.0
    (tmp_path / "labels.json").write_text(json.dumps({"fps": 25, "videos": {}}))
    assert dataset_fps(tmp_path) == 25.0
    (tmp_path / "labels.json").write_text(json.dumps({"fps": 0, "videos": {}}))
    with pytest.raises(DatasetError):
        dataset_fps(tmp_path)


def test_recordings_give_their_own_rate_unless_labels_say_otherwise(tmp_path: Path) -> None:
    (tmp_path / "testing").mkdir()
    write_clip(tmp_path / "testing" / "01.mp4", np.zeros((5, 48, 64), np.uint8), fps=25)
    assert dataset_fps(tmp_path) == 25.0
    (tmp_path / "labels.json").write_text(json.dumps({"videos": {}}))
    assert dataset_fps(tmp_path) == 25.0
    (tmp_path / "labels.json").write_text(json.dumps({"fps": 10, "videos": {}}))
    assert dataset_fps(tmp_path) == 10.0
