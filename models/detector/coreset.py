"""The appearance memory's cells: a greedy k-center coreset (Roth et al., "Towards Total Recall in Industrial
Anomaly Detection", CVPR 2022: PatchCore), chosen from cells sampled over the footage, and continued as the
memory learns more of a site (models/selftrain/adaptation.py, models/selftrain/feedback.py)."""

from __future__ import annotations

import numpy as np
import torch


def coreset(cells: torch.Tensor, size: int, rng: np.random.Generator) -> torch.Tensor:
    """`size` rows of `cells` [N, C] chosen greedily, each the farthest from those chosen before (k-center):
    the memory covers every kind of normal cell, however rare."""
    if len(cells) <= size:
        picks = rng.choice(len(cells), size, replace=True)  # too few cells: repeats change no distance
        return cells[torch.from_numpy(picks)]
    chosen = [int(rng.integers(len(cells)))]
    nearest = (cells - cells[chosen[0]]).norm(dim=1)
    for _ in range(size - 1):
        chosen.append(int(nearest.argmax()))
        nearest = torch.minimum(nearest, (cells - cells[chosen[-1]]).norm(dim=1))
    return cells[torch.tensor(chosen)]


def extend_coreset(
    chosen: torch.Tensor, cells: torch.Tensor, count: int, within: float | None = None
) -> torch.Tensor:
    """`chosen` [M, C] and up to `count` rows of `cells` [N, C] added greedily, each the farthest from all
    kept so far: the k-center coreset continued from `chosen`, so that what the memory covers worst
    enters it first and nothing it covered is lost. With `within`, it stops once every cell is that
    close to a kept one."""
    if count <= 0 or len(cells) == 0:
        return chosen
    nearest = torch.cdist(cells, chosen).amin(1)
    added: list[int] = []
    for _ in range(min(count, len(cells))):
        if within is not None and float(nearest.max()) <= within:
            break
        added.append(int(nearest.argmax()))
        nearest = torch.minimum(nearest, (cells - cells[added[-1]]).norm(dim=1))
    return torch.cat([chosen, cells[torch.tensor(added)]]) if added else chosen


def sample_cells(features: torch.Tensor, count: int, rng: np.random.Generator) -> torch.Tensor:
    """`count` random cells [count, C] of features [N, C, h, w]."""
    flat = features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])
    return flat[torch.from_numpy(rng.choice(len(flat), min(count, len(flat)), replace=False))].float()
