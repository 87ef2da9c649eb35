"""Per-cell exceptions: what operators marked normal here is damped where it appears in a frame, and only
there.

An alert covers a whole event, and a frame score the whole frame: an exception judged per alert or per
frame silences a cart or a skateboarder beside a cyclist the site accepts. This one works per cell (the
appearance stream's cells, 8 pixels a side): it keeps the descriptors of the labelled frames' most
anomalous cells (appearance features, and the speed above normal in the view's row units, so that a far
cyclist moves as fast as a near one), and a cell taken for one of them has its evidence taken out of
every stream map, with its neighbours (`spread` cells around: an object's edge cells look like neither it
nor the background), before the frame score is taken from the maps. Everything else in the frame scores
as before. A cell is taken for a kept one by one of two tests:

- ratio (`ratio` > 0): its features lie nearer a kept cell's than `ratio` times their distance to the
  appearance memory of normal footage: it looks more like what was marked normal than like anything the
  site's footage shows. A skateboarder looks like the pedestrians the memory holds, a cyclist like the
  cyclists kept;
- reach (`ratio` 0): its joint descriptor (the speed weighted by `speed_weight`, so that its spread over
  the labelled frames' cells equals that of the features) lies closer than `reach` to a kept one. The
  reach is how close the kept cells of one labelled event lie to those of another
  (models/selftrain/feedback.learn_cell_exception): how far the kind was seen to carry from one event to
  the next, not the spacing of near-identical cells of one event.

Only a cell at least `seed` from the appearance memory is taken (0: any): more unusual than the site's
normal footage looks (models/selftrain/feedback.exception_seed), the bicycle itself. A cyclist's rider looks like the walkers the memory holds, and so
does a skateboarder beside him: taken by their looks alone, riders' cells take the skateboarder with them,
while taken from the unusual cells with `spread` cells around them, the cyclist goes whole and the
skateboarder stays (Ped2, the site accepting bicycles: later bicycle alerts 3 -> 1 with every other event
kept, where every matching cell took two of the three other events with them).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

CHUNK = 512  # kept cells compared at a time: bounds the distance matrix a batch needs


def nearest_distance(queries: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """[N]: the distance from each of `queries` [N, D] to the nearest row of `kept` [K, D] (both centred
    on the kept rows' mean: no digits lost to |q|^2 - 2q.k + |k|^2)."""
    squared_queries = (queries * queries).sum(1, keepdim=True)
    best = torch.full_like(squared_queries[:, 0], float("inf"))
    for part in kept.split(CHUNK):
        squared = squared_queries - 2.0 * queries @ part.t() + (part * part).sum(1)[None]
        best = torch.minimum(best, squared.amin(1))
    return best.clamp(min=0.0).sqrt()


class CellException(nn.Module):
    """(cell features [B, C, h, w], cell speed above normal [B, h, w], cell distance to the appearance
    memory [B, h, w]) -> keep [B, h, w]: 0 at cells taken for a kept one (none while the test's
    threshold, `ratio` or `reach`, is 0; only those at least `seed` from the memory) and the `spread`
    cells around them; 1 elsewhere."""

    def __init__(self, channels: int, cells: int, spread: int = 0) -> None:
        super().__init__()
        self.spread = spread  # the graph's shape: a setting of the config (DetectorConfig.exception_spread)
        # kept descriptors (features, weighted speed) relative to their mean
        self.register_buffer("kept", torch.zeros(cells, channels + 1))
        self.register_buffer("center", torch.zeros(channels + 1))
        self.register_buffer(
            "events", torch.zeros(cells, dtype=torch.long)
        )  # labelled event of each kept cell
        self.register_buffer("speed_weight", torch.ones(()))
        self.register_buffer("reach", torch.zeros(()))
        self.register_buffer("ratio", torch.zeros(()))
        self.register_buffer("seed", torch.zeros(()))  # distance to the memory a taken cell needs
        # the kind of event each kept cell was learned for (models/selftrain/feedback.kind_key), so that a
        # kind the site no longer accepts can be taken out; 0: no kind (a false alarm's cells)
        self.register_buffer("kinds", torch.zeros(cells, dtype=torch.long))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # model files from before the seed test: every matching cell was taken; from before kinds: none known
        state_dict.setdefault(prefix + "seed", torch.zeros(()))
        kept = state_dict.get(prefix + "kept")
        if kept is not None:
            state_dict.setdefault(prefix + "kinds", torch.zeros(len(kept), dtype=torch.long))
        super()._load_from_state_dict(state_dict, prefix, *args)

    @property
    def descriptors(self) -> torch.Tensor:
        """[K, C + 1] the kept descriptors (features, weighted speed)."""
        return self.kept + self.center

    def set_kept(
        self,
        descriptors: torch.Tensor,
        events: torch.Tensor,
        speed_weight: float,
        reach: float,
        ratio: float,
        seed: float = 0.0,
        kinds: torch.Tensor | None = None,
    ) -> None:
        """Keeps `descriptors` [K, C + 1] (features, speed weighted by `speed_weight`) of labelled events
        `events` [K] of `kinds` [K] (None: no kind), taken where a cell lies at least `seed` from the
        appearance memory; K may differ from the current number (see DetectorNet.set_exception)."""
        kinds = torch.zeros(len(events), dtype=torch.long) if kinds is None else kinds
        if (
            descriptors.ndim != 2
            or descriptors.shape[1] != self.kept.shape[1]
            or len(descriptors) != len(events)
            or len(kinds) != len(events)
        ):
            raise ValueError(
                f"descriptors {tuple(descriptors.shape)}, events {tuple(events.shape)} and kinds "
                f"{tuple(kinds.shape)}: [K, {self.kept.shape[1]}], [K] and [K] needed"
            )
        center = descriptors.mean(0) if len(descriptors) else torch.zeros_like(self.center)
        self.center.copy_(center)
        self.kept = (descriptors - center).to(self.kept)
        self.events = events.to(torch.long).clone()
        self.kinds = kinds.to(torch.long).clone()
        self.speed_weight.fill_(speed_weight)
        self.reach.fill_(reach)
        self.ratio.fill_(ratio)
        self.seed.fill_(seed)

    def describe(self, features: torch.Tensor, speed: torch.Tensor) -> torch.Tensor:
        """[B * h * w, C + 1] the joint descriptor of every cell."""
        joint = torch.cat([features, speed[:, None] * self.speed_weight], dim=1)
        return joint.permute(0, 2, 3, 1).reshape(-1, joint.shape[1])

    def nearest(self, descriptors: torch.Tensor) -> torch.Tensor:
        """[N] the distance from each of `descriptors` [N, C + 1] to its nearest kept one."""
        return nearest_distance(descriptors - self.center, self.kept)

    def forward(
        self, features: torch.Tensor, speed: torch.Tensor, memory_distance: torch.Tensor
    ) -> torch.Tensor:
        batch, _, height, width = features.shape
        joint = self.describe(features, speed) - self.center
        # both tests, one chosen by value (arithmetic: ONNX Runtime has no Where over booleans): the exported
        # graph serves whichever the weights hold
        dtype = features.dtype
        looks = nearest_distance(joint[:, :-1], self.kept[:, :-1])
        by_ratio = (looks < self.ratio * memory_distance.reshape(-1)).to(dtype)
        by_reach = (nearest_distance(joint, self.kept) < self.reach).to(dtype)
        use_ratio = (self.ratio > 0).to(dtype)
        unusual = (memory_distance.reshape(-1) >= self.seed).to(dtype)
        excepted = (unusual * (use_ratio * by_ratio + (1.0 - use_ratio) * by_reach)).reshape(
            batch, 1, height, width
        )
        if self.spread:
            excepted = F.max_pool2d(excepted, 2 * self.spread + 1, stride=1, padding=self.spread)
        return 1.0 - excepted[:, 0]
