"""Per-camera alert hysteresis: frame scores in, new/update/end alert events out. Pure logic, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workers.bus.keys import Alert, AlertEventType


@dataclass(frozen=True)
class HysteresisConfig:
    threshold: float
    start_frames: int  # consecutive frames over the threshold that open an alert
    end_frames: int  # consecutive frames under it that close the alert
    update_interval_s: float  # least time between update events of one alert


def alert_id(camera: str, start_seq: int, start_ts: float) -> str:
    """Deterministic, so that re-scoring the same frames can never make a second alert."""
    return f"{camera}-{start_seq}-{int(start_ts * 1000)}"


class AlertTracker:
    def __init__(self, camera: str, config: HysteresisConfig) -> None:
        self.camera = camera
        self.config = config
        self.over = 0  # length of the current run of frames over the threshold
        self.under = 0  # length of the current run under it (counts while an alert is open)
        self.run_start: tuple[int, float] | None = None  # (seq, ts) where the current over-run began
        self.run_peak: tuple[float, int, float] | None = None  # (score, seq, ts) of the current over-run
        self.alert: Alert | None = None
        self.last_event_ts = 0.0

    def update(self, seq: int, ts: float, score: float, model: str) -> list[tuple[AlertEventType, Alert]]:
        events: list[tuple[AlertEventType, Alert]] = []
        if score >= self.config.threshold:
            self.over += 1
            self.under = 0
            if self.run_start is None:
                self.run_start = (seq, ts)
            if self.run_peak is None or score > self.run_peak[0]:
                self.run_peak = (score, seq, ts)
            if self.alert is None and self.over >= self.config.start_frames:
                events.append(("new", self._open(seq, model)))
            elif self.alert is not None:
                self.alert.last_seq = seq
                improved = score > self.alert.peak_score
                if improved:
                    self.alert.peak_score, self.alert.peak_seq, self.alert.peak_ts = score, seq, ts
                if improved and ts - self.last_event_ts >= self.config.update_interval_s:
                    events.append(("update", self._touch(ts)))
        else:
            self.over = 0
            self.run_start = self.run_peak = None
            if self.alert is not None:
                self.under += 1
                if self.under >= self.config.end_frames:
                    events.append(("end", self._close(ts)))
        return events

    def _open(self, seq: int, model: str) -> Alert:
        assert self.run_start is not None and self.run_peak is not None
        start_seq, start_ts = self.run_start
        peak_score, peak_seq, peak_ts = self.run_peak
        self.alert = Alert(
            id=alert_id(self.camera, start_seq, start_ts),
            camera=self.camera,
            state="open",
            start_ts=start_ts,
            start_seq=start_seq,
            last_seq=seq,
            peak_score=peak_score,
            peak_seq=peak_seq,
            peak_ts=peak_ts,
            model=model,
        )
        return self._touch(peak_ts)

    def _touch(self, ts: float) -> Alert:
        assert self.alert is not None
        self.last_event_ts = ts
        self.alert.updated_ts = ts
        return self.alert.model_copy()

    def _close(self, ts: float) -> Alert:
        assert self.alert is not None
        self.alert.state = "closed"
        self.alert.end_seq = self.alert.last_seq
        self.alert.end_ts = ts
        closed = self._touch(ts)
        self.alert = None
        self.under = 0
        return closed

    def close_open(self, ts: float, reason: str) -> Alert | None:
        """Close the open alert because its camera stopped or restarted, not by its scores; None if none.

        The frames that follow (if any) belong to another stream session: no alert or over-run spans both.
        """
        self.over = 0
        self.run_start = self.run_peak = None
        if self.alert is None:
            return None
        self.alert.end_reason = reason
        return self._close(ts)

    def state_dict(self) -> dict[str, Any]:
        return {
            "over": self.over,
            "under": self.under,
            "run_start": self.run_start,
            "run_peak": self.run_peak,
            "alert": self.alert.model_dump() if self.alert else None,
            "last_event_ts": self.last_event_ts,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.over = int(state.get("over", 0))
        self.under = int(state.get("under", 0))
        run_start, run_peak = state.get("run_start"), state.get("run_peak")
        self.run_start = (int(run_start[0]), float(run_start[1])) if run_start else None
        self.run_peak = (float(run_peak[0]), int(run_peak[1]), float(run_peak[2])) if run_peak else None
        self.alert = Alert.model_validate(state["alert"]) if state.get("alert") else None
        self.last_event_ts = float(state.get("last_event_ts", 0.0))
