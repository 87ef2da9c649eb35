"""Event-level alert quality: what an operator sees, from the alerts the service's hysteresis raises.

An alert is an Episode of models/scoring/hysteresis.py over a video's causal scores (the same code the
inference worker runs), spanning [start_seq, last_seq]. A ground-truth event is a run of abnormal frames.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.evaluation.videos import VideoScores
from models.scoring.hysteresis import Episode, HysteresisConfig, episodes


@dataclass(frozen=True)
class VideoAlert:
    video: str
    episode: Episode


def true_ranges(flags: np.ndarray) -> list[tuple[int, int]]:
    """The inclusive [start, end] runs of True frames."""
    padded = np.concatenate([[False], flags.astype(bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [(int(s), int(e) - 1) for s, e in zip(edges[::2], edges[1::2], strict=True)]


def overlaps(episode: Episode, start: int, end: int) -> bool:
    """Whether the episode covers any frame of the inclusive range [start, end]."""
    return episode.start_seq <= end and episode.last_seq >= start


def raise_alerts(scored: dict[str, VideoScores], config: HysteresisConfig, fps: float) -> list[VideoAlert]:
    return [
        VideoAlert(name, episode)
        for name, video in scored.items()
        for episode in episodes(video.scores, config, fps)
    ]


def event_report(
    alerts: list[VideoAlert], labels: dict[str, np.ndarray], fps: float, threshold: float
) -> dict[str, float | int | None]:
    """Event recall, alert precision, false alerts per hour of normal footage and the delay (seconds) from an
    event's first frame to the frame whose score paged the operator (0 when an alert was already open)."""
    by_video: dict[str, list[Episode]] = {name: [] for name in labels}
    for alert in alerts:
        by_video.setdefault(alert.video, []).append(alert.episode)
    ranges = {name: true_ranges(flags) for name, flags in labels.items()}
    normal_frames = sum(int((~flags).sum()) for flags in labels.values())
    return ranges_report(by_video, ranges, normal_frames, fps, threshold)


def ranges_report(
    found: dict[str, list[Episode]],
    ranges: dict[str, list[tuple[int, int]]],
    normal_frames: int,
    fps: float,
    threshold: float,
) -> dict[str, float | int | None]:
    """event_report's figures for the alerts of each stream against its ground-truth `ranges` (inclusive;
    given, not read from flags: on a camera that plays videos back to back, an event that ends one video
    and one that begins the next are two events) and `normal_frames` frames of normal footage."""
    events = detected = true_alerts = 0
    delays: list[float] = []
    for name, stream_ranges in ranges.items():
        episodes_here = found.get(name, [])
        events += len(stream_ranges)
        for start, end in stream_ranges:
            hits = [e for e in episodes_here if overlaps(e, start, end)]
            if hits:
                detected += 1
                delays.append(max(0, min(e.opened_seq for e in hits) - start) / fps)
        true_alerts += sum(1 for e in episodes_here if any(overlaps(e, s, t) for s, t in stream_ranges))
    alerts = sum(len(episodes_here) for episodes_here in found.values())
    normal_hours = normal_frames / fps / 3600
    false_alerts = alerts - true_alerts
    return {
        "threshold": threshold,
        "fps": fps,
        "events": events,
        "alerts": alerts,
        "event_recall": detected / events if events else None,
        "alert_precision": true_alerts / alerts if alerts else None,
        "false_alerts": false_alerts,
        "false_alerts_per_hour": false_alerts / normal_hours if normal_hours else None,
        "delay_median_s": float(np.median(delays)) if delays else None,
        "delay_p90_s": float(np.percentile(delays, 90)) if delays else None,
    }


def write_alerts_csv(
    alerts: list[VideoAlert], path: Path, native: Callable[[str, int], int] | None = None
) -> None:
    """video, start_frame, end_frame, peak_score; `native(video, position)` gives a scored frame's index in
    its video where only some of its frames were analysed."""
    frame = native or (lambda _, position: position)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        out.write("video,start_frame,end_frame,peak_score\n")
        for alert in alerts:
            e, video = alert.episode, alert.video
            out.write(f"{video},{frame(video, e.start_seq)},{frame(video, e.last_seq)},{e.peak_score:.7f}\n")
