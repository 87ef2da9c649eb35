from __future__ import annotations

import itertools

import numpy as np
import pytest

from models.evaluation.metrics import per_video_minmax, roc_auc


def brute_force_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    pairs = list(itertools.product(scores[labels], scores[~labels]))
    return sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)


def test_perfect_reversed_and_constant_scores() -> None:
    labels = np.array([0, 0, 1, 1], dtype=bool)
    assert roc_auc(labels, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert roc_auc(labels, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert roc_auc(labels, np.full(4, 0.5)) == 0.5


def test_matches_pairwise_definition_with_ties() -> None:
    rng = np.random.default_rng(0)
    labels = rng.random(60) < 0.4
    scores = rng.integers(0, 6, 60).astype(float)  # many ties
    assert roc_auc(labels, scores) == pytest.approx(brute_force_auc(labels, scores))


def test_needs_both_classes_and_matching_lengths() -> None:
    with pytest.raises(ValueError, match="both"):
        roc_auc(np.ones(3, dtype=bool), np.arange(3.0))
    with pytest.raises(ValueError, match="labels"):
        roc_auc(np.array([0, 1], dtype=bool), np.arange(3.0))


def test_per_video_minmax() -> None:
    out = per_video_minmax({"a": np.array([2.0, 4.0, 3.0]), "b": np.array([1.0, 1.0])})
    np.testing.assert_allclose(out["a"], [0.0, 1.0, 0.5])
    np.testing.assert_allclose(out["b"], [0.0, 0.0])
