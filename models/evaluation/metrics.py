"""Frame-level accuracy figures: ROC AUC (ties count half) and the papers' per-video min-max protocol."""

from __future__ import annotations

import numpy as np


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve = P(score of a random positive > score of a random negative), ties 1/2."""
    labels = np.asarray(labels, dtype=bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"{labels.size} labels but {scores.size} scores")
    positives = int(labels.sum())
    negatives = labels.size - positives
    if positives == 0 or negatives == 0:
        raise ValueError("ROC AUC needs both positive and negative labels")
    # Mann-Whitney U with mid-ranks for ties
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(scores.size, dtype=np.float64)
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [scores.size]))
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + end + 1) / 2.0
    u = ranks[labels].sum() - positives * (positives + 1) / 2.0
    return float(u / (positives * negatives))


def per_video_minmax(scores_by_video: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The literature's protocol: each video's scores rescaled to [0, 1] with its own (future) min and max."""
    out = {}
    for name, scores in scores_by_video.items():
        low, high = float(np.min(scores)), float(np.max(scores))
        out[name] = (scores - low) / (high - low) if high > low else np.zeros_like(scores)
    return out
