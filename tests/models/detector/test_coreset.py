"""The appearance memory's k-center coreset, on small tensors."""

from __future__ import annotations

import numpy as np
import torch

from models.detector.coreset import coreset, extend_coreset


def test_coreset_keeps_rare_cells() -> None:
    common = torch.zeros(500, 4) + torch.randn(500, 4) * 0.01
    rare = torch.full((3, 4), 5.0)
    chosen = coreset(torch.cat([common, rare]), 8, np.random.default_rng(0))
    assert chosen.shape == (8, 4) and (chosen == 5.0).all(dim=1).any()  # one far cell covers the rare ones


def test_a_continued_coreset_keeps_its_cells_and_adds_what_they_do_not_cover() -> None:
    noise = torch.Generator().manual_seed(0)
    kept = torch.randn(6, 4, generator=noise) * 0.01
    covered = kept.repeat(20, 1) + torch.randn(120, 4, generator=noise) * 0.01  # near-copies of the kept
    new_view = torch.cat([torch.full((5, 4), 3.0), torch.full((5, 4), -3.0)])  # two looks never seen
    grown = extend_coreset(kept, torch.cat([covered, new_view]), 2)
    assert torch.equal(grown[:6], kept) and len(grown) == 8
    assert (grown[6:].abs() == 3.0).all() and grown[6, 0] != grown[7, 0]  # one cell of each new look
    assert torch.equal(extend_coreset(kept, new_view, 0), kept)
