"""Event categories: once operators have named the type of some alerts, predict it for new ones.

A multi-task head in the spirit of LAD (Wan et al., *Anomaly detection in video sequences: a benchmark and
computational model*, IET Image Processing 2021: supervised anomaly detection with a category head) needs many
labelled events; a site has a handful. So the head is a nearest-class-mean classifier on an alert's
descriptor (the detector's own view of its peak frame: the appearance features and the speed of its most
anomalous cells), which learns from one example a class and needs no training run. Its confidence is
the softmax over the distances to the class means, in units of the spread within classes; an alert far
from every class, or with no clear winner, is "unknown".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from models.detector.streams import DetectorNet
from models.selftrain.ordinal import cell_evidence, pool_to_cells

UNKNOWN = "unknown"
DESCRIPTOR_CELLS = 4  # the most anomalous cells of the peak frame that describe an alert


def alert_descriptor(model: DetectorNet, clip: np.ndarray, anomaly_map: np.ndarray) -> np.ndarray:
    """float32 [C + 1]: mean appearance features and speed above normal of the peak frame's most
    anomalous cells; clip uint8 [history + 1, H, W], anomaly_map [H', W'] (any resolution)."""
    features, cell_speed = (part[0] for part in cell_evidence(model, clip[None]))
    evidence = torch.from_numpy(pool_to_cells(np.asarray(anomaly_map)[None], tuple(features.shape[-2:]))[0])
    top = torch.argsort(evidence.flatten(), descending=True)[:DESCRIPTOR_CELLS]
    cells = features.flatten(1)[:, top].mean(1)
    return torch.cat([cells, cell_speed.flatten()[top].mean()[None]]).numpy().astype(np.float32)


@dataclass
class CategoryModel:
    categories: list[str]
    means: np.ndarray  # [K, D]
    spread: float  # typical distance of an example to its class mean
    min_confidence: float = 0.5
    max_distance: float = 3.0  # in spreads: farther from every class mean is unknown

    def predict(self, descriptor: np.ndarray) -> tuple[str, float]:
        """(category or "unknown", confidence of the nearest class)."""
        distances = np.linalg.norm(self.means - descriptor[None], axis=1) / self.spread
        logits = -(distances**2) / 2
        probabilities = np.exp(logits - logits.max())
        probabilities /= probabilities.sum()
        best = int(np.argmax(probabilities))
        confidence = float(probabilities[best])
        if confidence < self.min_confidence or distances[best] > self.max_distance:
            return UNKNOWN, confidence
        return self.categories[best], confidence

    def to_dict(self) -> dict[str, Any]:
        return {"categories": self.categories, "examples_spread": self.spread}


def fit_categories(descriptors: np.ndarray, names: list[str]) -> CategoryModel | None:
    """The class means of labelled alerts' descriptors; None before two categories have examples."""
    categories = sorted(set(names))
    if len(categories) < 2:
        return None
    labels = np.array(names)
    means = np.stack([descriptors[labels == name].mean(0) for name in categories])
    within = np.linalg.norm(descriptors - means[[categories.index(n) for n in names]], axis=1)
    between = np.linalg.norm(means[:, None] - means[None], axis=2)[np.triu_indices(len(categories), 1)]
    # one example per class has no spread of its own: half the distance between classes stands in
    spread = float(np.median(within[within > 0])) if (within > 0).any() else float(np.median(between) / 2)
    return CategoryModel(categories, means, max(spread, 1e-6))
