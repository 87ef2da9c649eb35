"""The learned detector: a lean U-Net that predicts the current frame from the past ones.

Input: a clip of `history` past grayscale frames plus the current one (uint8, the same clip for training,
export and serving). The network sees the past frames, their differences (motion) and the pixel position
(a fixed camera's normal motion depends on where in the view it happens); it predicts the current frame as
a residual on the last past frame. The pixel error map |prediction - current frame|, less the mean error
of normal footage at that pixel, is part of the graph, so the exported ONNX model maps clips straight to
error maps.

Cost is kept low for CPU serving: a stride-2 stem (no convolution at full resolution; the output comes
back to full resolution by a pixel shuffle), few channels at high resolution, and inputs larger than
128x192 folded into channels (space-to-depth) so that the cost does not grow with the resolution.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class NetworkConfig:
    height: int = 128
    width: int = 192
    history: int = 4  # past frames the prediction is made from
    widths: tuple[int, ...] = (16, 32, 64, 96)  # channels at 1/2, 1/4, 1/8, 1/16 resolution
    coords: bool = True  # pixel-position input channels
    unshuffle: int = 1  # input pixels folded into channels (space-to-depth) before the stride-2 stem

    @classmethod
    def for_size(cls, height: int, width: int) -> NetworkConfig:
        """The default network for an input size: larger inputs are folded into channels first, so that
        the cost stays that of a 128x192 input while the fine detail still reaches the network."""
        unshuffle = max(1, round(min(height / 128, width / 192)))
        return cls(height=height, width=width, unshuffle=unshuffle)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "widths": list(self.widths)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetworkConfig:
        return cls(**{**data, "widths": tuple(data["widths"])})


def _conv_block(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class FramePredictor(nn.Module):
    """clips uint8 [B, history + 1, H, W] -> (prediction, error map) float32 [B, H, W], values in [0, 1]."""

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        step = 2 * config.unshuffle
        if config.height % step or config.width % step or config.history < 2:
            raise ValueError(
                f"input {config.height}x{config.width} must have sides divisible by {step} and history >= 2"
            )
        self.config = config
        in_channels = (2 * config.history - 1 + (2 if config.coords else 0)) * config.unshuffle**2
        widths = config.widths
        self.encoders = nn.ModuleList(
            [_conv_block(in_channels, widths[0], stride=2)]
            + [_conv_block(widths[i - 1], widths[i], stride=2) for i in range(1, len(widths))]
        )
        self.decoders = nn.ModuleList(
            [_conv_block(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(len(widths) - 1))]
        )
        # back to full resolution: sub-pixel outputs per stem position
        self.fold = nn.PixelUnshuffle(config.unshuffle)
        self.head = nn.Sequential(nn.Conv2d(widths[0], step**2, 3, padding=1), nn.PixelShuffle(step))
        nn.init.zeros_(self.head[0].weight)  # start as "nothing moves": the last past frame
        nn.init.zeros_(self.head[0].bias)
        ys = (
            torch.linspace(-1.0, 1.0, config.height)
            .view(1, 1, -1, 1)
            .expand(1, 1, config.height, config.width)
        )
        xs = (
            torch.linspace(-1.0, 1.0, config.width)
            .view(1, 1, 1, -1)
            .expand(1, 1, config.height, config.width)
        )
        self.register_buffer("position", torch.cat([ys, xs], dim=1).contiguous(), persistent=False)
        # mean error of normal footage per pixel, set after training: places the network always predicts
        # a little wrong (borders, flicker) would otherwise win every patch maximum and mask real anomalies
        self.register_buffer("baseline", torch.zeros(config.height, config.width))

    def predict(
        self, clips: torch.Tensor, offsets: list[tuple[int, int]] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """float32 clips in [0, 1] -> (predicted current frame, actual current frame), each [B, H, W].

        Training may pass crops of the full view; `offsets` (top, left) place each crop in the view.
        """
        past = clips[:, :-1]
        channels = [past, past[:, 1:] - past[:, :-1]]
        if self.config.coords:
            if offsets is None:
                channels.append(self.position.expand(clips.shape[0], -1, -1, -1))
            else:
                height, width = clips.shape[-2:]
                channels.append(
                    torch.stack([self.position[0, :, y : y + height, x : x + width] for y, x in offsets])
                )
        features = self.fold(torch.cat(channels, dim=1))
        skips = []
        for encoder in self.encoders:
            features = encoder(features)
            skips.append(features)
        for decoder, skip in zip(self.decoders, reversed(skips[:-1]), strict=True):
            features = F.interpolate(features, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            features = decoder(torch.cat([features, skip], dim=1))
        prediction = (past[:, -1:] + self.head(features)).clamp(0.0, 1.0)
        return prediction[:, 0], clips[:, -1]

    def set_baseline(self, mean_error: np.ndarray) -> None:
        self.baseline.copy_(torch.from_numpy(mean_error))

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        prediction, actual = self.predict(clips.float() / 255.0)
        return ((prediction - actual).abs() - self.baseline).clamp(min=0.0)
