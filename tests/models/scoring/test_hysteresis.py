import itertools

import numpy as np

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


def test_one_camera_s_alerts_never_overlap_in_time() -> None:
    """One machine per camera, one episode open at a time: an over-run while one is open extends it, so
    there is nothing to merge (with or without the cooldown)."""
    rng = np.random.default_rng(0)
    runs = rng.integers(1, 40, 300)  # runs over and under the threshold, short and long
    scores = np.repeat(np.tile([0.8, 0.2], 150), runs) + rng.normal(0, 0.05, runs.sum())
    for cooldown in (0.0, 2.0):
        found = episodes(scores, HysteresisConfig(0.5, 3, 10, 0.0, cooldown_s=cooldown), fps=10)
        assert len(found) > 10
        for before, after in itertools.pairwise(found):
            assert before.last_seq < after.start_seq and before.end_ts is not None
            assert before.end_ts <= after.start_ts
