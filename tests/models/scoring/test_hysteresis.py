from models.scoring.hysteresis import Hysteresis, HysteresisConfig, episodes

CONFIG = HysteresisConfig(threshold=0.5, start_frames=3, end_frames=2, update_interval_s=0.0)


def test_decisions_open_peak_close() -> None:
    machine = Hysteresis(CONFIG)
    scores = [0.1, 0.6, 0.7, 0.8, 0.9, 0.2, 0.7, 0.1, 0.1, 0.1]
    decisions = [(seq, d[0]) for seq, s in enumerate(scores) if (d := machine.step(seq, seq * 0.1, s))]
    assert decisions == [(3, "open"), (4, "peak"), (8, "close")]


def test_episodes_span_the_over_run_and_close_at_the_end() -> None:
    scores = [0.9, 0.1] + [0.6, 0.8, 0.7, 0.2, 0.2] + [0.1] * 5 + [0.6, 0.6, 0.9]
    first, last = episodes(scores, CONFIG, fps=10)
    assert (first.start_seq, first.opened_seq, first.last_seq, first.peak_seq) == (2, 4, 4, 3)
    assert first.end_ts == 0.6  # closed by the second frame under
    assert (last.start_seq, last.opened_seq, last.last_seq, last.peak_score) == (12, 14, 14, 0.9)
    assert last.end_ts == 1.4  # still open when the video ends


def test_a_run_within_the_cooldown_rejoins_the_last_episode() -> None:
    config = HysteresisConfig(0.5, 2, 1, update_interval_s=0.0, cooldown_s=0.3)
    scores = [0.9, 0.9, 0.1, 0.1, 0.9, 0.9, 0.1] + [0.1] * 5 + [0.9, 0.9]
    joined, later = episodes(scores, config, fps=10)
    assert (joined.start_seq, joined.last_seq, joined.end_ts) == (0, 5, 0.6)
    assert later.start_seq == 12


def test_no_alert_from_short_spikes() -> None:
    assert episodes([0.9, 0.9, 0.1, 0.9, 0.1], CONFIG, fps=10) == []
