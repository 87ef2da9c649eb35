"""Mining confident frames from a scored window of a stream (plain functions over scores and error maps).

The paper's rule (mining normal data for retraining, sections 3.3-3.4):
- abnormal frames: frame score S >= eta_s; their pixel masks hide where the error is high;
- normal frames: among S < eta_s, RS_h = mean error over pixels above a coarse eta_p; then eta_p := min RS
  and FS_h = mean error over pixels above it; RS and FS min-max normalized over the candidates;
  hinge T = alpha * (X - X^2) with X = mean(normalized RS); keep frame h if normalized FS_h < T;
- only runs of at least FNmin consecutive selected frames are kept;
- a pixel takes part in the loss (MASK = 1) only where its normalized error is below eta_a.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MiningParams:
    eta_s: float = 0.85  # frame score at or above which a frame is mined as abnormal
    eta_p: float = 0.02  # coarse pixel-error threshold locating possible anomalies
    alpha: float = 2.0  # hinge sensitivity, in (0, 4)
    min_run: int = 10  # FNmin: fewest consecutive frames in a mined run
    eta_a: float = 0.80  # normalized pixel error at or above which a pixel is masked out


@dataclass(frozen=True)
class NormalSelection:
    keep: np.ndarray  # bool [N]: frames mined as normal (runs of at least min_run)
    rs: np.ndarray  # normalized RS over the candidates (nan elsewhere)
    fs: np.ndarray  # normalized FS over the candidates (nan elsewhere)
    hinge: float  # T


def long_runs(selected: np.ndarray, min_run: int) -> np.ndarray:
    """`selected` with every run of consecutive True shorter than `min_run` set to False."""
    selected = np.asarray(selected, dtype=bool)
    out = np.zeros_like(selected)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], selected.astype(np.int8), [0]])))
    for start, end in zip(edges[::2], edges[1::2], strict=True):
        if end - start >= min_run:
            out[start:end] = True
    return out


def abnormal_frames(scores: np.ndarray, params: MiningParams) -> np.ndarray:
    """bool [N]: frames scored at or above eta_s, in runs of at least min_run."""
    return long_runs(np.asarray(scores) >= params.eta_s, params.min_run)


def _mean_above(error_maps: np.ndarray, threshold: float) -> np.ndarray:
    """Per frame: the mean error over pixels above `threshold` (0 where none is)."""
    above = error_maps > threshold
    count = above.reshape(len(error_maps), -1).sum(1)
    total = np.where(above, error_maps, 0.0).reshape(len(error_maps), -1).sum(1)
    return np.where(count > 0, total / np.maximum(count, 1), 0.0)


def _min_max(values: np.ndarray) -> np.ndarray:
    span = values.max() - values.min()
    return (values - values.min()) / span if span > 0 else np.zeros_like(values)


def normal_frames(scores: np.ndarray, error_maps: np.ndarray, params: MiningParams) -> NormalSelection:
    """The paper's normal-frame rule over one window; error_maps float [N, H, W]."""
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    rs_all = np.full(n, np.nan)
    fs_all = np.full(n, np.nan)
    candidates = np.flatnonzero(scores < params.eta_s)
    if len(candidates) == 0:
        return NormalSelection(np.zeros(n, dtype=bool), rs_all, fs_all, 0.0)
    maps = np.asarray(error_maps, dtype=np.float64)[candidates]
    rs = _mean_above(maps, params.eta_p)
    fs = _mean_above(maps, float(rs.min()))  # dynamic eta_p: misses are the minority
    rs, fs = _min_max(rs), _min_max(fs)
    mean_rs = float(rs.mean())
    hinge = params.alpha * (mean_rs - mean_rs**2)
    selected = np.zeros(n, dtype=bool)
    selected[candidates[fs < hinge]] = True
    rs_all[candidates], fs_all[candidates] = rs, fs
    return NormalSelection(long_runs(selected, params.min_run), rs_all, fs_all, hinge)


def pixel_masks(error_maps: np.ndarray, eta_a: float, reference_scale: float | None = None) -> np.ndarray:
    """float32 [N, H, W]: 1 where a pixel may be learned, 0 where its normalized error is >= eta_a.

    Errors are normalized per frame (min-max, the paper's rule) or, given `reference_scale`, divided by
    it (e.g. a high quantile of pixel errors on normal footage), so that a frame whose error is
    everywhere small hides nothing and an anomalous object stands out against normal statistics.
    """
    maps = np.asarray(error_maps, dtype=np.float32)
    if reference_scale is not None:
        normalized = maps / max(reference_scale, 1e-12)
    else:
        low = maps.min(axis=(1, 2), keepdims=True)
        span = maps.max(axis=(1, 2), keepdims=True) - low
        normalized = np.where(span > 0, (maps - low) / np.where(span > 0, span, 1), 0.0)
    return (normalized < eta_a).astype(np.float32)
