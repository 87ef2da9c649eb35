import itertools
from dataclasses import replace

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


# Page's CUSUM: scores that are exact binary fractions keep its sums exact
WEAK = 0.375  # under the threshold (0.5), over the reference
CUSUM = HysteresisConfig(0.5, 3, 2, update_interval_s=0.0, cusum_reference=0.125, cusum_limit=1.0)


def test_weak_sustained_evidence_opens_an_alert_from_where_it_began() -> None:
    (alert,) = episodes([0.0] * 5 + [WEAK] * 6, CUSUM, fps=10)
    # 0.25 a frame over the reference: the fourth weak frame reaches the limit
    assert (alert.start_seq, alert.opened_seq, alert.peak_score) == (5, 8, WEAK)
    assert episodes([0.0] * 5 + [WEAK] * 6, replace(CUSUM, cusum_limit=0.0), fps=10) == []


def test_a_short_blip_and_scores_at_the_reference_open_nothing() -> None:
    blip = [0.0] * 5 + [0.625, 0.625] + [0.0] * 10  # 2 frames over: 1.0 over the reference, then it decays
    assert episodes(blip, replace(CUSUM, cusum_limit=1.5), fps=10) == []
    assert episodes([0.125] * 1000, CUSUM, fps=10) == []  # however long
    # dips under the reference take back what was summed: no limit reached from alternating frames
    assert episodes([WEAK, 0.0, 0.0] * 100, CUSUM, fps=10) == []


def test_strong_frames_open_by_the_threshold_rule_and_the_cusum_waits_while_an_alert_is_open() -> None:
    machine = Hysteresis(replace(CUSUM, cusum_limit=2.0))
    scores = [0.5] * 3 + [WEAK] * 2 + [0.0] * 3
    decisions = [(seq, d[0]) for seq, s in enumerate(scores) if (d := machine.step(seq, seq * 0.1, s))]
    # 3 frames over the threshold open it (the CUSUM is at 1.125); weak frames count as under and close it
    assert decisions == [(2, "open"), (4, "close")]
    assert machine.cusum == 0.0  # nothing summed while it was open
    reopened = [machine.step(seq, seq * 0.1, WEAK) for seq in range(10, 18)]
    assert [d[0] if d else None for d in reopened] == [None] * 7 + ["open"]


def test_strong_frames_reach_a_low_limit_before_the_start_frames() -> None:
    (alert,) = episodes([0.0, 0.875, 0.875, 0.0, 0.0], CUSUM, fps=10)  # 0.75 a frame over the reference
    assert (alert.start_seq, alert.opened_seq) == (1, 2)
