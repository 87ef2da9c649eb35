"""Event classes of a test set's abnormal ranges (made by eye, benchmarks/data/*-categories.json) and what
an operator sees of each class in alerts: the "this is normal here" benchmarks' bookkeeping."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from models.evaluation.events import VideoAlert, event_report, overlaps

PER_ROUND = 5  # alerts the operator marks at a time

Classes = dict[str, list[tuple[tuple[int, int], set[str]]]]


def overlaps_any(alert: VideoAlert, ranges: list[tuple[int, int]]) -> bool:
    return any(overlaps(alert.episode, start, end) for start, end in ranges)


def event_classes(path: Path) -> Classes:
    data = json.loads(path.read_text())
    return {
        video: [((r["range"][0], r["range"][1]), set(r["categories"])) for r in ranges]
        for video, ranges in data["videos"].items()
    }


def alert_classes(alert: VideoAlert, classes: Classes) -> set[str]:
    found: set[str] = set()
    for (start, end), names in classes.get(alert.video, []):
        if overlaps(alert.episode, start, end):
            found |= names
    return found


def class_recall(
    alerts: list[VideoAlert],
    classes: Classes,
    videos: list[str],
    accepted: str,
) -> dict[str, Any]:
    """Events holding a class other than the accepted one, and how many an alert overlaps."""
    events = [(v, rng) for v in videos for rng, names in classes.get(v, []) if names - {accepted}]
    hit = [(v, rng) for v, rng in events if any(a.video == v and overlaps_any(a, [rng]) for a in alerts)]
    return {"events": len(events), "detected": len(hit), "recall": len(hit) / len(events) if events else None}


def class_summary(
    alerts: list[VideoAlert],
    classes: Classes,
    accepted: str,
    labels: dict[str, np.ndarray],
    fps: float,
    threshold: float,
) -> dict[str, Any]:
    """What the operator sees of `alerts` on the videos of `labels`: alerts of the accepted class alone,
    the other classes' event recall, the event metrics."""
    return {
        "later_alerts_of_class": sum(1 for a in alerts if alert_classes(a, classes) == {accepted}),
        "later_alerts_with_class": sum(1 for a in alerts if accepted in alert_classes(a, classes)),
        "other_classes": class_recall(alerts, classes, list(labels), accepted),
        "events": event_report(alerts, labels, fps, threshold),
        "alert_list": [[a.video, a.episode.start_seq, a.episode.last_seq] for a in alerts],
    }


def marked_of_class(alerts: list[VideoAlert], classes: Classes, accepted: str) -> list[VideoAlert]:
    """The first alerts whose events are of the accepted class alone: what the operator marks normal."""
    marked = [a for a in alerts if alert_classes(a, classes) == {accepted}][:PER_ROUND]
    if not marked:
        raise SystemExit(f"no alert of '{accepted}' alone to mark normal")
    return marked
