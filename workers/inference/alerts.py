"""Per-camera alert events: the shared hysteresis (models/scoring/hysteresis.py) turned into new/update/end
Alert messages. Pure logic, no I/O."""

from __future__ import annotations

from typing import Any

from models.scoring.hysteresis import Episode, Hysteresis, HysteresisConfig
from workers.bus.schemas import Alert, AlertEventType

__all__ = ["AlertTracker", "HysteresisConfig", "alert_id"]


def alert_id(camera: str, start_seq: int, start_ts: float) -> str:
    """Deterministic, so that re-scoring the same frames can never make a second alert."""
    return f"{camera}-{start_seq}-{int(start_ts * 1000)}"


class AlertTracker:
    def __init__(self, camera: str, config: HysteresisConfig) -> None:
        self.camera = camera
        self.config = config
        self.hysteresis = Hysteresis(config)
        self.alert: Alert | None = None
        self.last_alert: Alert | None = None  # the last closed alert, which one within the cooldown rejoins
        self.last_event_ts = 0.0

    def retuned(self, config: HysteresisConfig) -> AlertTracker:
        """This tracker, its open alert and counts kept, deciding by `config` from now on (a new model's
        threshold)."""
        self.config = self.hysteresis.config = config
        return self

    def update(self, seq: int, ts: float, score: float, model: str) -> list[tuple[AlertEventType, Alert]]:
        decided = self.hysteresis.step(seq, ts, score)
        if self.alert is not None and self.hysteresis.episode is not None:
            self.alert.last_seq = self.hysteresis.episode.last_seq
        if decided is None:
            return []
        decision, episode = decided
        if decision == "open":
            return [("new", self._open(episode, model))]
        if decision == "rejoin":
            return [("update", self._rejoin(episode, ts))]
        if decision == "close":
            return [("end", self._close(ts))]
        assert self.alert is not None
        self._take_peak(episode)
        if ts - self.last_event_ts >= self.config.update_interval_s:
            return [("update", self._touch(ts))]
        return []

    def _open(self, episode: Episode, model: str) -> Alert:
        self.alert = Alert(
            id=alert_id(self.camera, episode.start_seq, episode.start_ts),
            camera=self.camera,
            state="open",
            start_ts=episode.start_ts,
            start_seq=episode.start_seq,
            last_seq=episode.last_seq,
            peak_score=episode.peak_score,
            peak_seq=episode.peak_seq,
            peak_ts=episode.peak_ts,
            model=model,
        )
        return self._touch(episode.peak_ts)

    def _rejoin(self, episode: Episode, ts: float) -> Alert:
        """The last alert goes on under its id: the operator is not paged again within the cooldown."""
        assert self.last_alert is not None
        self.alert = self.last_alert
        self.alert.state, self.alert.end_seq, self.alert.end_ts = "open", None, None
        self.alert.last_seq = episode.last_seq
        self._take_peak(episode)
        return self._touch(ts)

    def _take_peak(self, episode: Episode) -> None:
        assert self.alert is not None
        self.alert.peak_score, self.alert.peak_seq, self.alert.peak_ts = (
            episode.peak_score,
            episode.peak_seq,
            episode.peak_ts,
        )

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
        self.last_alert, self.alert = self.alert, None
        return closed

    def close_open(self, ts: float, reason: str) -> Alert | None:
        """Close the open alert because its camera stopped or restarted, not by its scores; None if none.

        The frames that follow (if any) belong to another stream session: no alert or over-run spans both,
        and the cooldown does not rejoin an alert of the session before.
        """
        machine = self.hysteresis
        machine.over = 0
        machine.run_start = machine.run_peak = None
        machine.reset_cusum()
        ended = None
        if self.alert is not None:
            machine.close(ts)
            self.alert.end_reason = reason
            ended = self._close(ts)
        machine.last, self.last_alert = None, None
        return ended

    def state_dict(self) -> dict[str, Any]:
        machine = self.hysteresis
        return {
            "over": machine.over,
            "under": machine.under,
            "run_start": machine.run_start,
            "run_peak": machine.run_peak,
            "cusum": machine.cusum,
            "cusum_start": machine.cusum_start,
            "cusum_peak": machine.cusum_peak,
            "alert": self.alert.model_dump() if self.alert else None,
            "last_alert": self.last_alert.model_dump() if self.last_alert else None,
            "last_event_ts": self.last_event_ts,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        machine = self.hysteresis
        machine.over = int(state.get("over", 0))
        machine.under = int(state.get("under", 0))
        machine.run_start, machine.run_peak = _seq_ts(state.get("run_start")), _peak(state.get("run_peak"))
        machine.cusum = float(state.get("cusum", 0.0))
        machine.cusum_start, machine.cusum_peak = (
            _seq_ts(state.get("cusum_start")),
            _peak(state.get("cusum_peak")),
        )
        self.alert = Alert.model_validate(state["alert"]) if state.get("alert") else None
        self.last_alert = Alert.model_validate(state["last_alert"]) if state.get("last_alert") else None
        self.last_event_ts = float(state.get("last_event_ts", 0.0))
        machine.episode = _episode(self.alert) if self.alert else None
        machine.last = _episode(self.last_alert) if self.last_alert else None


def _seq_ts(saved: list[Any] | None) -> tuple[int, float] | None:
    return (int(saved[0]), float(saved[1])) if saved else None


def _peak(saved: list[Any] | None) -> tuple[float, int, float] | None:
    return (float(saved[0]), int(saved[1]), float(saved[2])) if saved else None


def _episode(alert: Alert) -> Episode:
    """An alert's episode; the opening frame is not persisted (only eval's delay reads it)."""
    return Episode(
        alert.start_seq,
        alert.start_ts,
        alert.start_seq,
        alert.last_seq,
        alert.peak_score,
        alert.peak_seq,
        alert.peak_ts,
        alert.end_ts,
    )
