"""What a live replay served, mapped back onto the footage and measured (benchmarks/bench_live.py): each camera's
first stream session onto its clip (seq k is clip frame k; when frames never arrived, aligned to the offline
scores), its alerts onto the same indices, and the figures `vigil eval` gives, over each camera's whole stream."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from benchmarks.live_cameras import CameraFootage
from models.detector.scores import ScoreCalibration
from models.evaluation.events import overlaps, ranges_report
from models.evaluation.metrics import roc_auc
from models.evaluation.videos import VideoScores
from models.scoring.camera import CameraScorer, ScorerConfig
from models.scoring.hysteresis import Episode, HysteresisConfig, episodes

# one stream of videos back to back: frames after a cut whose scores still see the video before (the detector's
# past frames, the smoothing)
CUT_FRAMES = 5


@dataclasses.dataclass
class CameraStream:
    """One camera's served stream mapped onto its footage: index k is the k-th frame of its videos back to
    back."""

    footage: CameraFootage
    score: np.ndarray  # served score per frame (NaN: not scored)
    raw: np.ndarray
    lag_s: np.ndarray  # scored_ts - ts per frame (NaN: not scored)
    segments: list[tuple[int, int]]  # [start, end) of each stream session: where the hysteresis runs on
    index_of_seq: dict[int, int]
    alignment: str
    episodes: list[Episode]
    alerts: list[dict[str, Any]]
    facts: dict[str, Any]


def align(live: np.ndarray, offline: np.ndarray, most: int) -> int:
    """The shift s (0..most) whose offline[k + s] the live scores follow best (least mean absolute
    difference): how many frames of the clip never reached the camera before its first scored frame."""
    best, best_error = 0, np.inf
    for shift in range(most + 1):
        error = float(np.nanmean(np.abs(live - offline[shift : shift + len(live)])))
        if error < best_error:
            best, best_error = shift, error
    return best


def session_segments(
    item: CameraFootage, scores: list[dict[str, Any]], offline: dict[str, VideoScores] | None
) -> tuple[dict[int, int], list[tuple[int, int]], str]:
    """Frame index of each seq, the sessions' index ranges, and how they were found. One stream: its first
    session is the footage (aligned to the offline scores when frames are missing); a session per video:
    the n-th session is the n-th video, from its first frame."""
    by_session: dict[int, list[int]] = {}
    for point in scores:
        by_session.setdefault(point["session"], []).append(point["seq"])
    sessions = sorted(by_session)
    if not item.per_video:
        seqs = sorted(by_session[sessions[0]]) if sessions else []
        scored, shift = len(seqs), 0
        alignment = "seq k of the first session is frame k (every frame arrived)"
        if seqs and seqs[-1] - seqs[0] + 1 < item.frames and offline is not None:
            live = np.full(seqs[-1] - seqs[0] + 1, np.nan)
            by_seq = {point["seq"]: point["score"] for point in scores if point["session"] == sessions[0]}
            live[np.array(seqs) - seqs[0]] = [by_seq[seq] for seq in seqs]
            reference = np.concatenate([offline[name].scores for name in item.videos])
            shift = align(live, reference, item.frames - len(live))
            alignment = (
                f"{item.frames - scored} frames missing: aligned to the offline scores (shift {shift})"
            )
        index = {seq: seq - seqs[0] + shift for seq in seqs if 0 <= seq - seqs[0] + shift < item.frames}
        return index, [(0, item.frames)], alignment
    index, segments = {}, []
    for session, start, length in zip(sessions, item.starts, item.lengths, strict=False):
        seqs = sorted(by_session[session])
        index |= {seq: start + seq - seqs[0] for seq in seqs if seq - seqs[0] < length}
        segments.append((start, start + length))
    counts = [len(by_session[session]) for session in sessions]
    alignment = "session n is video n from its first frame"
    if counts != list(item.lengths):
        alignment += f" (frames per session {counts}, per video {list(item.lengths)})"
    return index, segments, alignment


def camera_stream(
    item: CameraFootage, served: dict[str, Any], offline: dict[str, VideoScores] | None
) -> CameraStream:
    """The camera's served scores mapped onto its footage, and its alerts onto the same indices."""
    scores = served["scores"]
    index, segments, alignment = session_segments(item, scores, offline)
    placed = [point for point in scores if point["seq"] in index]
    at = np.array([index[point["seq"]] for point in placed], dtype=int)
    score, raw, lag = (np.full(item.frames, np.nan) for _ in range(3))
    score[at] = [point["score"] for point in placed]
    raw[at] = [point["raw"] for point in placed]
    lag[at] = [point["scored_ts"] - point["ts"] for point in placed]
    alerts = [alert for alert in served["alerts"] if alert["start_seq"] in index]
    opened = served["opened"]

    def at_seq(seq: int) -> int:  # an alert's frames are scored frames; its last one may end the footage
        return index.get(seq, max(index.values()))

    found = [
        Episode(
            start_seq=index[alert["start_seq"]],
            start_ts=alert["start_ts"],
            opened_seq=at_seq(opened.get(alert["id"], alert["start_seq"])),
            last_seq=at_seq(alert["last_seq"]),
            peak_score=alert["peak_score"],
            peak_seq=at_seq(alert["peak_seq"]),
            peak_ts=alert["peak_ts"],
        )
        for alert in alerts
    ]
    facts = {
        "videos": list(item.videos),
        "clip_kbit_s": round(
            sum(c.stat().st_size for c in item.clips) * 8 / 1000 / (item.frames / item.fps), 1
        ),
        "frames_streamed": item.frames,
        "frames_ingested": int(served["status"].get("frames", 0)),
        "frames_scored": int(np.isfinite(score).sum()),
        "frames_dropped": served["dropped"],
        "ingest_dropped": int(served["status"].get("dropped", 0)),
        "reconnects": int(served["status"].get("reconnects", 0)),
        "sessions": sorted({point["session"] for point in scores}),
        "models": sorted({point["model"] for point in placed}),
        "alerts_outside_the_footage": len(served["alerts"]) - len(alerts),
    }
    return CameraStream(item, score, raw, lag, segments, index, alignment, found, alerts, facts)


def live_events(
    streams: list[CameraStream], labels: dict[str, np.ndarray], fps: float, threshold: float
) -> dict:
    """The served alerts over each camera's whole stream."""
    found = {s.footage.camera: s.episodes for s in streams}
    ranges = {s.footage.camera: s.footage.ranges(labels) for s in streams}
    normal = sum(int((~s.footage.flags(labels)).sum()) for s in streams)
    return ranges_report(found, ranges, normal, fps, threshold)


def rescored_per_video(
    streams: list[CameraStream], calibrations: dict[str, ScoreCalibration | None]
) -> dict[str, VideoScores]:
    """The live raw scores cut back into the dataset's videos and normalized as `vigil eval` does, each video
    from its camera's calibration in the model (`calibrations`, by camera) afresh: what the transport alone
    (H.264, RTSP, decoding) changed. Frames never scored are left out."""
    out = {}
    for s in streams:
        for name, start, length in zip(s.footage.videos, s.footage.starts, s.footage.lengths, strict=True):
            raw = s.raw[start : start + length]
            scorer = CameraScorer(calibrations[s.footage.camera], ScorerConfig().at_rate(s.footage.fps))
            scores = np.array([scorer.update(float(x)) if np.isfinite(x) else np.nan for x in raw])
            out[name] = VideoScores(raw=raw, scores=scores)
    return out


def scored_aucs(flags: np.ndarray, scores: np.ndarray, raw: np.ndarray) -> dict[str, float]:
    """micro AUC of the scores and of the raw scores over the frames scored (finite scores)."""
    ok = np.isfinite(scores)
    return {"micro_auc": roc_auc(flags[ok], scores[ok]), "micro_auc_raw": roc_auc(flags[ok], raw[ok])}


def video_auc(scored: dict[str, VideoScores], labels: dict[str, np.ndarray]) -> dict[str, float]:
    """scored_aucs over the dataset's videos."""
    return scored_aucs(
        np.concatenate([labels[name] for name in scored]),
        np.concatenate([video.scores for video in scored.values()]),
        np.concatenate([video.raw for video in scored.values()]),
    )


def hysteresis_check(streams: list[CameraStream], config: HysteresisConfig, fps: float) -> dict[str, Any]:
    """Whether the served alerts are the ones the shared hysteresis raises on the served scores, afresh in each
    stream session (the tracker times frames by their capture time, this by seq / fps: equal at a steady
    frame rate)."""
    out = {}
    for s in streams:
        scored = np.nan_to_num(s.score, nan=0.0)
        replayed = [
            (start + e.start_seq, start + e.opened_seq, start + e.last_seq)
            for start, end in s.segments
            for e in episodes(scored[start:end], config, fps)
        ]
        live = [(e.start_seq, e.opened_seq, e.last_seq) for e in s.episodes]
        out[s.footage.camera] = {"match": replayed == live, "served": live, "replayed": replayed}
    return out


def score_agreement(streams: list[CameraStream], offline: dict[str, VideoScores]) -> dict[str, Any]:
    """How far the served scores are from `vigil eval`'s for the same frames (normalized scores)."""
    live = np.concatenate([s.score for s in streams])
    reference = np.concatenate(
        [np.concatenate([offline[n].scores for n in s.footage.videos]) for s in streams]
    )
    ok = np.isfinite(live)
    difference = np.abs(live[ok] - reference[ok])
    return {
        "frames": int(ok.sum()),
        "mean_abs_difference": round(float(difference.mean()), 4),
        "p90_abs_difference": round(float(np.percentile(difference, 90)), 4),
        "max_abs_difference": round(float(difference.max()), 4),
        "pearson_r": round(float(np.corrcoef(live[ok], reference[ok])[0, 1]), 4),
    }


def micro_auc(streams: list[CameraStream], labels: dict[str, np.ndarray]) -> dict[str, float]:
    """scored_aucs over the cameras' whole streams."""
    return scored_aucs(
        np.concatenate([s.footage.flags(labels) for s in streams]),
        np.concatenate([s.score for s in streams]),
        np.concatenate([s.raw for s in streams]),
    )


def lag_figures(streams: list[CameraStream]) -> dict[str, float | None]:
    lag = np.concatenate([s.lag_s for s in streams])
    lag = lag[np.isfinite(lag)]
    if not len(lag):
        return {"p50_s": None, "p90_s": None, "max_s": None}
    return {
        "p50_s": round(float(np.percentile(lag, 50)), 3),
        "p90_s": round(float(np.percentile(lag, 90)), 3),
        "max_s": round(float(lag.max()), 3),
    }


def alert_rows(stream: CameraStream, labels: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Each served alert in (video, frame) terms, and whether it overlaps an event."""
    ranges = stream.footage.ranges(labels)
    rows = []
    for alert, episode in zip(stream.alerts, stream.episodes, strict=True):
        last = min(episode.last_seq, stream.footage.frames - 1)
        rows.append(
            {
                "id": alert["id"],
                "start": stream.footage.locate(episode.start_seq),
                "opened": stream.footage.locate(min(episode.opened_seq, stream.footage.frames - 1)),
                "last": stream.footage.locate(last),
                "peak_score": round(alert["peak_score"], 4),
                "end_reason": alert.get("end_reason"),
                "true": any(overlaps(episode, start, end) for start, end in ranges),
                # opened within a video's first frames: their past is the video before (a cut in the replay)
                "at_cut": not stream.footage.per_video
                and stream.footage.locate(episode.start_seq)[1] < CUT_FRAMES,
            }
        )
    return rows
