"""Alert hysteresis as a pure state machine: frame scores in, open/peak/close decisions out.

The inference worker's AlertTracker wraps it into alert events, and `vigil eval` runs it over scored videos,
so the alerts an evaluation counts are the ones the service would have raised.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Decision = Literal["open", "rejoin", "peak", "close"]


@dataclass(frozen=True)
class HysteresisConfig:
    threshold: float
    start_frames: int  # consecutive frames over the threshold that open an alert
    end_frames: int  # consecutive frames under it that close the alert
    update_interval_s: float  # least time between update events of one alert
    # a new over-run starting within this many seconds of the last alert's end rejoins that alert instead of
    # paging again (0: only an alert that overlaps or touches the last one)
    cooldown_s: float = 0.0
    # Page's CUSUM (Biometrika 1954) also opens an alert, on weak but sustained evidence: S = max(0, S + score -
    # cusum_reference) summed over the frames while no alert is open, opening at S >= cusum_limit (0: off)
    cusum_reference: float = 0.0
    cusum_limit: float = 0.0


@dataclass
class Episode:
    """One alert's span: where its over-run began, the frame that opened it, its last frame over, its peak."""

    start_seq: int
    start_ts: float
    opened_seq: int
    last_seq: int
    peak_score: float
    peak_seq: int
    peak_ts: float
    end_ts: float | None = None


class Hysteresis:
    def __init__(self, config: HysteresisConfig) -> None:
        self.config = config
        self.over = 0  # length of the current run of frames over the threshold
        self.under = 0  # length of the current run under it (counts while an episode is open)
        self.run_start: tuple[int, float] | None = None  # (seq, ts) where the current over-run began
        self.run_peak: tuple[float, int, float] | None = None  # (score, seq, ts) of the current over-run
        self.episode: Episode | None = None
        self.last: Episode | None = None  # the last closed episode, which a new run may rejoin
        self.cusum = 0.0  # Page's statistic while no episode is open
        self.cusum_start: tuple[int, float] | None = None  # (seq, ts) where it last rose from 0
        self.cusum_peak: tuple[float, int, float] | None = None  # (score, seq, ts) since then

    def step(self, seq: int, ts: float, score: float) -> tuple[Decision, Episode] | None:
        if self.episode is None and self.accumulate(seq, ts, score):
            assert self.cusum_start is not None and self.cusum_peak is not None
            return self.open(seq, self.cusum_start, self.cusum_peak)
        if score < self.config.threshold:
            self.over = 0
            self.run_start = self.run_peak = None
            if self.episode is None:
                return None
            self.under += 1
            return self.close(ts) if self.under >= self.config.end_frames else None
        self.over += 1
        self.under = 0
        if self.run_start is None:
            self.run_start = (seq, ts)
        if self.run_peak is None or score > self.run_peak[0]:
            self.run_peak = (score, seq, ts)
        if self.episode is None:
            if self.over < self.config.start_frames:
                return None
            return self.open(seq, self.run_start, self.run_peak)
        self.episode.last_seq = seq
        if score <= self.episode.peak_score:
            return None
        self.episode.peak_score, self.episode.peak_seq, self.episode.peak_ts = score, seq, ts
        return "peak", self.episode

    def accumulate(self, seq: int, ts: float, score: float) -> bool:
        """One frame into the CUSUM; True when it reaches the limit (the statistic then starts again)."""
        if self.config.cusum_limit <= 0:
            return False
        self.cusum = max(0.0, self.cusum + score - self.config.cusum_reference)
        if self.cusum == 0.0:
            self.cusum_start = self.cusum_peak = None
            return False
        if self.cusum_start is None:
            self.cusum_start = (seq, ts)
        if self.cusum_peak is None or score > self.cusum_peak[0]:
            self.cusum_peak = (score, seq, ts)
        return self.cusum >= self.config.cusum_limit

    def open(
        self, seq: int, start: tuple[int, float], peak: tuple[float, int, float]
    ) -> tuple[Decision, Episode]:
        """An episode from `start` (where the evidence began) opened at `seq`, or the last one rejoined."""
        (start_seq, start_ts), (peak_score, peak_seq, peak_ts) = start, peak
        self.reset_cusum()
        last = self.last
        if last is None or last.end_ts is None or start_ts - last.end_ts > self.config.cooldown_s:
            self.episode = Episode(start_seq, start_ts, seq, seq, peak_score, peak_seq, peak_ts)
            return "open", self.episode
        self.episode, last.last_seq, last.end_ts = last, seq, None
        if peak_score > last.peak_score:
            last.peak_score, last.peak_seq, last.peak_ts = peak_score, peak_seq, peak_ts
        return "rejoin", last

    def reset_cusum(self) -> None:
        self.cusum = 0.0
        self.cusum_start = self.cusum_peak = None

    def close(self, ts: float) -> tuple[Decision, Episode]:
        assert self.episode is not None
        closed, self.episode = self.episode, None
        closed.end_ts = ts
        self.under = 0
        self.last = closed
        return "close", closed


def episodes(scores: Iterable[float], config: HysteresisConfig, fps: float) -> list[Episode]:
    """The alerts a camera would raise over one video's scores; one still open at the end closes there."""
    machine = Hysteresis(config)
    out = []
    seq = -1
    for seq, score in enumerate(scores):
        decided = machine.step(seq, seq / fps, float(score))
        if decided is not None and decided[0] == "open":
            out.append(decided[1])  # a rejoined episode is already listed
    if machine.episode is not None:
        machine.close(seq / fps)
    return out
