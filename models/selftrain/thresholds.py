"""Adaptive threshold from the consensus of models (*Interleaving One-Class and Weakly-Supervised
Models with Adaptive Thresholding for Unsupervised Video Anomaly Detection*, Nie et al., ECCV 2024,
section 3.3).

The anomaly set is the intersection of the top-scored sets of every model trained so far; its size tau
starts at a rough fraction of the window and can only shrink. Adapting stops once a change of tau falls
below `stop_ratio` of the first change: the models agree on what is abnormal.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np


def top_set(scores: np.ndarray, size: int) -> set[int]:
    """Indices of the `size` highest scores."""
    if size <= 0:
        return set()
    return {int(i) for i in np.argsort(-np.asarray(scores), kind="stable")[:size]}


@dataclass
class ConsensusThreshold:
    """How many items of a window are abnormal, refined each time a new model scores the window."""

    items: int
    initial_fraction: float = 0.3  # rough share of abnormal items; larger than the true one
    stop_ratio: float = 0.1
    sizes: list[int] = field(default_factory=list)  # tau after each update, the first from initial_fraction
    stopped: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.initial_fraction < 1:
            raise ValueError("initial_fraction must be in (0, 1)")
        self.sizes.append(max(1, round(self.initial_fraction * self.items)))

    @property
    def size(self) -> int:
        return self.sizes[-1]

    def update(self, scores_by_model: list[np.ndarray]) -> int:
        """New tau from every model so far (each scoring the same `items` frames); monotone non-increasing."""
        if self.stopped or not scores_by_model:
            return self.size
        if any(len(scores) != self.items for scores in scores_by_model):
            raise ValueError(f"every model must score the {self.items} items of the window")
        consensus = set.intersection(*(top_set(scores, self.size) for scores in scores_by_model))
        new_size = min(len(consensus), self.size)
        # The reference is the first real change: one model alone agrees with itself.
        first_change = next((a - b for a, b in itertools.pairwise(self.sizes) if a > b), None)
        change = self.size - new_size
        self.sizes.append(new_size)
        if first_change is not None and change < self.stop_ratio * first_change:
            self.stopped = True
        return new_size

    def abnormal(self, scores: np.ndarray) -> np.ndarray:
        """bool mask of the items a model's scores put in the current anomaly set."""
        mask = np.zeros(self.items, dtype=bool)
        mask[list(top_set(scores, self.size))] = True
        return mask

    def score_threshold(self, scores: np.ndarray) -> float:
        """The score at which a frame enters the anomaly set under this model (for alerting/mining)."""
        ordered = np.sort(np.asarray(scores))[::-1]
        return float(ordered[min(self.size, self.items) - 1])
