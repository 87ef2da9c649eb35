"""The ordinal scoring head, trained on pseudo labels and operators' labels (self-trained ordinal regression).

Following *Self-trained Deep Ordinal Regression for End-to-End Video Anomaly Detection* (Pang, Yan, Shen,
van den Hengel and Bai, CVPR 2020; sections 3.3-3.5), each cell of a frame gets a degree of
anomaly in [0, 1], regressed with an absolute loss onto ordinal targets: anomalies 1, normal 0.
- pseudo labels, from the cycle's mining: the masked cells of mined anomalies (where the evidence was)
  are 1, cells of mined normal frames and the unmasked cells of mined anomalies are 0; pseudo anomalies
  (foreign patches pasted into normal frames) are 1 where the patch is;
- operators' labels weigh `label_weight` times more: a frame labelled abnormal is 1 at its most evident
  cells (the frame is labelled, not its pixels), a frame labelled normal is 0 everywhere, so that a
  false alarm is learned away at its place (the head sees the cell's position).
Each retraining cycle is a round of the paper's iteration: the head continues from its last weights, on
the sets the newest model mined.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.nn import functional as F

from models.detector.flow import clip_speeds
from models.detector.pseudo import ClipSampler, PseudoAnomalyConfig
from models.detector.streams import DetectorNet

if TYPE_CHECKING:
    from models.selftrain.config import MinedSet, Window
from models.selftrain.config import OrdinalConfig

BATCH = 32


def with_ordinal(model: DetectorNet) -> DetectorNet:
    """A copy of `model` with a (silent) ordinal head added to its streams."""
    if model.ordinal is not None:
        return copy.deepcopy(model)
    config = replace(model.config, streams=(*model.config.streams, "ordinal"))
    extended = DetectorNet(config)
    missing, unexpected = extended.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected and all(name.startswith("ordinal.") for name in missing)
    return extended.eval()


@dataclass
class CellExamples:
    inputs: torch.Tensor  # [N, C + 3] the head's input per cell
    targets: torch.Tensor  # [N] 0 normal, 1 anomaly
    weights: torch.Tensor  # [N]

    def counts(self) -> dict[str, int]:
        positive = self.targets > 0.5
        return {"positive": int(positive.sum()), "negative": int((~positive).sum())}


def cell_evidence(model: DetectorNet, clips: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The appearance features [B, C, h, w] and the speed above normal [B, h, w] of each cell of the last
    frame of each clip (uint8 [B, history + 1, H, W])."""
    assert model.appearance is not None
    speed = torch.from_numpy(clip_speeds(clips, model.config.flow))
    with torch.inference_mode():
        features = model.appearance.features(torch.from_numpy(clips[:, -1:]).float() / 255.0)
        return features, model.cell_speed(speed)


def pool_to_cells(grid: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Per-pixel values [B, h', w'] pooled (max) onto the cell grid [B, h, w]."""
    pooled = F.adaptive_max_pool2d(torch.from_numpy(np.asarray(grid, dtype=np.float32))[:, None], size)
    return pooled[:, 0].numpy()


def _cell_inputs(model: DetectorNet, clips: np.ndarray) -> torch.Tensor:
    """[B, C + 3, h, w]: the head's inputs for the last frame of each clip."""
    assert model.ordinal is not None
    return model.ordinal.inputs(*cell_evidence(model, clips))


def cell_examples(
    model: DetectorNet,
    window: Window,
    mined: MinedSet,
    maps: np.ndarray,
    config: OrdinalConfig,
    rng: np.random.Generator,
) -> CellExamples:
    """The head's training cells of a window; maps: the window's anomaly maps (any resolution)."""
    history = model.config.history
    inputs: list[torch.Tensor] = []
    targets: list[np.ndarray] = []
    weights: list[np.ndarray] = []

    def add(cells: torch.Tensor, target: float, weight: float) -> None:
        if len(cells):
            inputs.append(cells)
            targets.append(np.full(len(cells), target, dtype=np.float32))
            weights.append(np.full(len(cells), weight, dtype=np.float32))

    def sample(cells: torch.Tensor, count: int) -> torch.Tensor:
        return cells[torch.from_numpy(rng.choice(len(cells), min(count, len(cells)), replace=False))]

    labels = window.labels if window.labels is not None else np.full(len(window), -1)
    # mined frames (their masks: 0 where the evidence of an anomaly was)
    for start in range(0, len(mined.train), BATCH):
        rows = np.arange(start, min(start + BATCH, len(mined.train)))
        frames = mined.train[rows]
        grid = _cell_inputs(model, window.clips(frames, history))
        flat = grid.permute(0, 2, 3, 1)
        masked = pool_to_cells(1.0 - mined.masks[rows], grid.shape[-2:]) > 0.5
        for row, frame in enumerate(frames):
            cells = flat[row]
            if mined.abnormal[frame]:  # labelled abnormal frames are among them (labels override mining)
                weight = config.label_weight if labels[frame] == 1 else 1.0
                add(cells[torch.from_numpy(masked[row])], 1.0, weight)
                add(sample(cells[torch.from_numpy(~masked[row])], config.negatives_per_frame), 0.0, 1.0)
            elif labels[frame] == 0:  # a false alarm, by the operator's word: normal at every cell
                add(cells.reshape(-1, cells.shape[-1]), 0.0, config.label_weight)
            else:
                add(sample(cells.reshape(-1, cells.shape[-1]), config.negatives_per_frame), 0.0, 1.0)
    # frames an operator labelled abnormal: their most evident cells
    labelled = np.flatnonzero(labels == 1)
    for start in range(0, len(labelled), BATCH):
        frames = labelled[start : start + BATCH]
        grid = _cell_inputs(model, window.clips(frames, history))
        evidence = pool_to_cells(maps[frames], grid.shape[-2:]).reshape(len(frames), -1)
        flat = grid.permute(0, 2, 3, 1).reshape(len(frames), -1, grid.shape[1])
        for row in range(len(frames)):
            top = np.argsort(-evidence[row])[: config.labelled_cells]
            add(flat[row, torch.from_numpy(top)], 1.0, config.label_weight)
    # pseudo anomalies: a foreign patch in the current frame of mined normal frames
    normal = mined.train[~mined.abnormal[mined.train]]
    if len(normal) and config.pseudo_anomalies:
        picks = rng.choice(normal, config.pseudo_anomalies, replace=len(normal) < config.pseudo_anomalies)
        clips = window.clips(picks, history)
        sampler = ClipSampler([window.frames], history, PseudoAnomalyConfig(), rng)
        boxes = np.zeros((len(clips), *clips.shape[2:]), dtype=np.float32)
        for index, clip in enumerate(clips):
            top, left, height, width = sampler.paste_patch(clip, include_current=True)
            boxes[index, top : top + height, left : left + width] = 1.0
        for start in range(0, len(clips), BATCH):
            grid = _cell_inputs(model, clips[start : start + BATCH])
            inside = pool_to_cells(boxes[start : start + BATCH], grid.shape[-2:]) > 0.5
            add(grid.permute(0, 2, 3, 1)[torch.from_numpy(inside)], 1.0, 1.0)
    return CellExamples(
        torch.cat(inputs),
        torch.from_numpy(np.concatenate(targets)),
        torch.from_numpy(np.concatenate(weights)),
    )


def train_ordinal(model: DetectorNet, examples: CellExamples, config: OrdinalConfig) -> dict[str, Any]:
    """Fits the head (in place) to the examples: absolute loss on the degree of anomaly, anomalies and
    normal cells weighing the same in all (they are far fewer)."""
    head = model.ordinal
    assert head is not None
    torch.manual_seed(config.seed)
    positive = examples.targets > 0.5
    if not positive.any() or positive.all():
        return {"steps": 0, "reason": "needs both anomalies and normal cells", **examples.counts()}
    balance = torch.where(
        positive, 0.5 / examples.weights[positive].sum(), 0.5 / examples.weights[~positive].sum()
    )
    weights = examples.weights * balance
    sampling = weights / weights.sum()
    optimizer = torch.optim.Adam(head.parameters(), lr=config.learning_rate)
    head.train()
    loss_ema = float("nan")
    for _ in range(config.steps):
        picks = torch.multinomial(sampling, config.batch_cells, replacement=True)
        degree = torch.sigmoid(head.logits(examples.inputs[picks][:, :, None, None])[:, 0, 0])
        loss = (degree - examples.targets[picks]).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        value = float(loss.detach())
        loss_ema = value if np.isnan(loss_ema) else 0.95 * loss_ema + 0.05 * value
    head.eval()
    return {"steps": config.steps, "loss": loss_ema, **examples.counts()}
