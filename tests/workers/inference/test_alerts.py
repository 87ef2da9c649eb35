import json

import pytest

from workers.inference.alerts import AlertTracker, HysteresisConfig, alert_id

CONFIG = HysteresisConfig(threshold=0.5, start_frames=3, end_frames=2, update_interval_s=0.0)


def feed(tracker: AlertTracker, scores: list[float]) -> list[tuple[str, int, object]]:
    events = []
    for seq, score in enumerate(scores):
        for kind, alert in tracker.update(seq, ts=seq * 0.1, score=score, model="m1"):
            events.append((kind, seq, alert))
    return events


def test_short_spikes_open_nothing() -> None:
    assert feed(AlertTracker("cam", CONFIG), [0.9, 0.9, 0.1, 0.9, 0.1, 0.9, 0.9, 0.2]) == []


def test_alert_opens_after_start_frames_and_ends_after_end_frames() -> None:
    events = feed(AlertTracker("cam", CONFIG), [0.1, 0.6, 0.7, 0.8, 0.9, 0.2, 0.7, 0.1, 0.1, 0.1])
    kinds = [(kind, seq) for kind, seq, _ in events]
    assert kinds == [("new", 3), ("update", 4), ("end", 8)]
    new, end = events[0][2], events[-1][2]
    assert new.id == end.id and new.start_seq == 1 and new.peak_seq == 3
    assert end.state == "closed" and end.peak_score == 0.9 and end.peak_seq == 4 and end.end_seq == 6


def test_update_events_are_rate_limited() -> None:
    tracker = AlertTracker("cam", HysteresisConfig(0.5, 1, 5, update_interval_s=1.0))
    events = feed(tracker, [0.6 + 0.01 * i for i in range(30)])
    updates = [seq for kind, seq, _ in events if kind == "update"]
    assert updates == [10, 20]


def test_state_round_trip_continues_the_same_alert() -> None:
    first = AlertTracker("cam", CONFIG)
    opened = feed(first, [0.9, 0.9, 0.9])
    second = AlertTracker("cam", CONFIG)
    second.load_state_dict(first.state_dict())
    events = [e for seq in (3, 4) for e in second.update(seq, seq * 0.1, 0.1, "m1")]
    assert [kind for kind, _ in events] == ["end"]
    assert events[0][1].id == opened[0][2].id


def test_a_new_alert_within_the_cooldown_rejoins_the_last_one() -> None:
    tracker = AlertTracker("cam", HysteresisConfig(0.5, 3, 2, update_interval_s=0.0, cooldown_s=1.0))
    # closes at seq 4 (ts 0.4); a run from seq 9 (0.9 s, within 1 s) rejoins, one from seq 25 pages again
    scores = [0.9] * 3 + [0.1] * 6 + [0.8, 0.8, 0.95] + [0.1] * 13 + [0.9] * 3
    events = feed(tracker, scores)
    kinds = [(kind, seq) for kind, seq, _ in events]
    assert kinds == [("new", 2), ("end", 4), ("update", 11), ("end", 13), ("new", 27)]
    first, rejoined, second = events[0][2], events[2][2], events[4][2]
    assert rejoined.id == first.id and rejoined.state == "open" and rejoined.end_ts is None
    assert rejoined.peak_score == 0.95 and rejoined.last_seq == 11 and second.id != first.id


def test_the_cooldown_survives_a_state_round_trip() -> None:
    config = HysteresisConfig(0.5, 1, 1, update_interval_s=0.0, cooldown_s=5.0)
    first = AlertTracker("cam", config)
    opened = feed(first, [0.9, 0.1])
    second = AlertTracker("cam", config)
    second.load_state_dict(first.state_dict())
    events = second.update(3, 0.3, 0.9, "m1")
    assert [(kind, alert.id) for kind, alert in events] == [("update", opened[0][2].id)]


def test_a_retuned_tracker_keeps_its_open_alert_and_decides_at_the_new_threshold() -> None:
    tracker = AlertTracker("cam", CONFIG)
    opened = feed(tracker, [0.9, 0.9, 0.9])
    assert tracker.retuned(HysteresisConfig(0.3, 3, 2, update_interval_s=0.0)) is tracker
    events = [kind for seq in (3, 4, 5) for kind, _ in tracker.update(seq, seq * 0.1, 0.4, "m2")]
    assert "end" not in events and tracker.alert is not None and tracker.alert.id == opened[0][2].id


def test_the_motion_baseline_pages_at_its_own_threshold() -> None:
    from workers.config import AlertSettings, hysteresis_config

    alerts = AlertSettings()
    assert hysteresis_config(alerts, fps=10).threshold == alerts.threshold
    assert hysteresis_config(alerts, learned=False, fps=10).threshold == alerts.baseline_threshold
    assert hysteresis_config(alerts, 0.7, learned=False, fps=10).threshold == 0.7  # a camera's own


def test_a_takeover_keeps_the_sustained_evidence_summed_so_far() -> None:
    config = HysteresisConfig(0.5, 3, 2, update_interval_s=0.0, cusum_reference=0.125, cusum_limit=1.0)
    first = AlertTracker("cam", config)
    assert feed(first, [0.0, 0.375, 0.375, 0.375]) == []  # 0.75 of 1.0 summed
    second = AlertTracker("cam", config)
    second.load_state_dict(json.loads(json.dumps(first.state_dict())))  # as Redis keeps it
    ((kind, alert),) = second.update(4, 0.4, 0.375, "m1")
    assert kind == "new" and alert.start_seq == 1 and alert.id == alert_id("cam", 1, 0.1)
    assert first.close_open(0.5, "stopped") is None and first.hysteresis.cusum == 0.0


def test_an_adaptive_threshold_raises_a_learned_model_s_threshold_never_lowers_it() -> None:
    from workers.config import AlertSettings, hysteresis_config

    alerts = AlertSettings()
    assert hysteresis_config(alerts, adaptive=alerts.threshold - 0.1, fps=10).threshold == alerts.threshold
    assert hysteresis_config(alerts, adaptive=0.8, fps=10).threshold == 0.8
    own = hysteresis_config(alerts, 0.2, adaptive=0.8, fps=10)
    assert own.threshold == 0.2  # a camera's own overrides it
    baseline = hysteresis_config(alerts, learned=False, adaptive=0.8, fps=10)
    assert baseline.threshold == alerts.baseline_threshold


def test_alerts_open_and_close_after_the_same_time_at_every_camera_rate() -> None:
    from workers.config import AlertSettings, hysteresis_config

    alerts = AlertSettings()
    counts = {fps: hysteresis_config(alerts, fps=fps) for fps in (10, 5, 25, 1)}
    assert [(c.start_frames, c.end_frames) for c in counts.values()] == [(3, 10), (2, 5), (8, 25), (1, 1)]


def test_the_frame_counts_of_earlier_versions_are_refused_with_their_new_names() -> None:
    from pydantic import ValidationError

    from workers.config import AlertSettings

    with pytest.raises(ValidationError, match="VIGIL_ALERTS__START_S"):
        AlertSettings.model_validate({"start_frames": 3})
