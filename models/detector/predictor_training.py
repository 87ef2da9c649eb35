"""Training the frame predictor on normal footage: seedable, resumable, with a progress bar.

The budget is either epochs (passes over the training clips) or wall-clock minutes; the learning rate
follows a cosine over that budget. A checkpoint (weights, optimizer, progress, random states) is written
every few hundred steps and at the end, so `--resume` continues an interrupted run.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from models.detector.predictor import FramePredictor, NetworkConfig
from models.detector.pseudo import ClipSampler, PseudoAnomalyConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    minutes: float | None = 10.0  # wall-clock budget; used when epochs is None
    epochs: float | None = None
    batch_size: int = 16
    crop_fraction: float = 0.5  # training crops: this fraction of the view's height and width (faster steps)
    learning_rate: float = 2e-3
    seed: int = 0
    checkpoint_every: int = 200  # steps

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainResult:
    model: FramePredictor
    steps: int
    seconds: float
    final_loss: float


def _budget_fraction(config: TrainConfig, step: int, total_steps: int | None, elapsed: float) -> float:
    if total_steps is not None:
        return step / total_steps
    return elapsed / (60.0 * float(config.minutes or 0.0))


def gradient_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> float:
    """One optimizer step on `loss`; returns its value."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def running_mean(previous: float, value: float, decay: float) -> float:
    """Exponential moving average of a loss for logs; starts at the first value (`previous` NaN)."""
    return value if np.isnan(previous) else decay * previous + (1 - decay) * value


def train_predictor(
    videos: list[np.ndarray],
    network: NetworkConfig,
    pseudo: PseudoAnomalyConfig,
    config: TrainConfig,
    checkpoint: Path | None = None,
    resume: bool = False,
) -> TrainResult:
    """Trains a FramePredictor on normal videos (each uint8 [T, H, W] at the network's input size)."""
    if config.epochs is None and not config.minutes:
        raise ValueError("give a training budget: epochs or minutes")
    torch.manual_seed(config.seed)
    model = FramePredictor(network)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=1e-4)
    sampler = ClipSampler(videos, network.history, pseudo, np.random.default_rng(config.seed))
    total_steps = (
        max(int(config.epochs * len(sampler) / config.batch_size), 1) if config.epochs is not None else None
    )
    step, elapsed, loss_ema = 0, 0.0, float("nan")
    if resume and checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        sampler.rng.bit_generator.state = state["sampler_rng"]
        torch.set_rng_state(state["torch_rng"])
        step, elapsed, loss_ema = state["step"], state["elapsed"], state["loss_ema"]
        log.info("resuming from %s at step %d (%.0f s trained)", checkpoint, step, elapsed)

    def save_checkpoint() -> None:
        if checkpoint is None:
            return
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "sampler_rng": sampler.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "step": step,
            "elapsed": elapsed,
            "loss_ema": loss_ema,
            "network": network.to_dict(),
        }
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, checkpoint.with_suffix(".tmp"))
        checkpoint.with_suffix(".tmp").replace(checkpoint)

    step_px = 2 * network.unshuffle  # crop sides must fold into the stem exactly
    crop = (
        (
            max(step_px, step_px * round(network.height * config.crop_fraction / step_px)),
            max(step_px, step_px * round(network.width * config.crop_fraction / step_px)),
        )
        if config.crop_fraction < 1.0
        else None
    )
    model.train()
    bar = tqdm(
        total=total_steps if total_steps is not None else round(60 * float(config.minutes or 0)),
        initial=step if total_steps is not None else round(elapsed),
        unit="step" if total_steps is not None else "s",
        desc="training",
        dynamic_ncols=True,
    )
    started = time.monotonic() - elapsed
    while (fraction := _budget_fraction(config, step, total_steps, elapsed)) < 1.0:
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate * 0.5 * (1.0 + np.cos(np.pi * min(fraction, 1.0)))
        batch, offsets = sampler.batch(config.batch_size, crop)
        prediction, target = model.predict(torch.from_numpy(batch).float() / 255.0, offsets)
        loss = F.l1_loss(prediction, target)
        loss_ema = running_mean(loss_ema, gradient_step(optimizer, loss), 0.98)
        step += 1
        now = time.monotonic() - started
        bar.update(1 if total_steps is not None else round(now) - round(elapsed))
        elapsed = now
        bar.set_postfix(loss=f"{loss_ema:.4f}", step=step, refresh=False)
        if step % config.checkpoint_every == 0:
            save_checkpoint()
    bar.close()
    save_checkpoint()
    model.eval()
    return TrainResult(model=model, steps=step, seconds=elapsed, final_loss=loss_ema)
