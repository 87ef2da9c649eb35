import itertools

import numpy as np
import pytest

from models.selftrain.thresholds import ConsensusThreshold, top_set


def ranked(*groups: range, items: int = 100) -> np.ndarray:
    """Scores that rank the items of `groups` first, in order, and every other item after them."""
    order = [i for group in groups for i in group]
    order += [i for i in range(items) if i not in set(order)]
    scores = np.empty(items)
    scores[order] = np.linspace(1.0, 0.0, items)
    return scores


def test_top_set() -> None:
    assert top_set(np.array([0.1, 0.9, 0.5, 0.7]), 2) == {1, 3}
    assert top_set(np.array([0.1, 0.9]), 0) == set()


def test_consensus_shrinks_and_stops_once_a_change_is_under_a_tenth_of_the_first() -> None:
    threshold = ConsensusThreshold(items=100, initial_fraction=0.3)
    models = [
        ranked(range(30)),  # one model agrees with itself: tau stays 30
        ranked(range(10), range(30, 50)),  # top 30 shares 10 with the first: tau 30 -> 10 (first change 20)
        ranked(range(9), range(60, 61)),  # top 10 shares 9: change 1 < 0.1 * 20 -> stop
    ]
    sizes = [threshold.update(models[:k]) for k in range(1, 4)]
    assert sizes == [30, 10, 9] and threshold.stopped
    assert threshold.update([*models, ranked(range(3))]) == 9  # stopped: no more adapting


def test_consensus_never_grows_with_noisy_models() -> None:
    rng = np.random.default_rng(0)
    truth = (np.arange(100) < 10) * 1.0
    threshold = ConsensusThreshold(items=100, initial_fraction=0.3)
    models = [truth + rng.normal(0, 0.3, 100) for _ in range(6)]
    for k in range(1, 7):
        threshold.update(models[:k])
    assert all(a >= b for a, b in itertools.pairwise(threshold.sizes))


def test_hand_computed_update_and_score_threshold() -> None:
    threshold = ConsensusThreshold(items=6, initial_fraction=0.5)  # tau 3
    a = np.array([0.9, 0.8, 0.7, 0.1, 0.2, 0.3])  # top 3: {0, 1, 2}
    b = np.array([0.9, 0.1, 0.8, 0.7, 0.2, 0.3])  # top 3: {0, 2, 3}
    assert threshold.update([a]) == 3
    assert threshold.update([a, b]) == 2  # {0, 2}
    assert threshold.abnormal(a).tolist() == [True, True, False, False, False, False]
    assert threshold.score_threshold(a) == 0.8
    with pytest.raises(ValueError, match="6 items"):
        threshold.update([a[:5]])
