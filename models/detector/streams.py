"""The learned detector: evidence streams, each a pixel map of how unlike normal footage a frame is.

- motion: optical-flow speed above the normal speed at that pixel (models/detector/flow.py computes the flow;
  the normal speed per pixel is fitted to normal footage), in units of the normal speed of moving things
  on that row of the view (`fit_row_scale`): under perspective a far cyclist moves fewer pixels than a
  near walker, and is as anomalous as a near cyclist. Fast things where people walk slowly.
- appearance: the distance of each image cell's pretrained MobileNetV2 features to the nearest of a
  memory of normal cells (a coreset of the normal footage's cells, as in PatchCore: Roth et al., CVPR 2022). Things that look
  unlike anything seen there: a cart, a car, a bicycle.
- place: motion where normal footage rarely moves (models/detector/place.py): a person on a lawn where
  people keep to the path. It speaks only where that is far beyond normal footage's (a gated stream).
- prediction: the error of a U-Net predicting the frame from the past ones (models/detector/predictor.py), trained
  with pseudo anomalies it must not reproduce; optional (it measured no gain over the two above, at
  twice their cost).
- ordinal: a small scoring head over each cell's appearance features, its speed above normal and its
  place in the view, giving its degree of anomaly in [0, 1] (self-trained ordinal regression: trained by
  the retraining worker on pseudo labels and operators' labels, models/selftrain/ordinal.py); it needs the
  appearance stream, and starts out silent.

`DetectorNet` runs the selected streams on a batch of clips and the speed maps of their last frames and
returns one map per stream, with the cells operators marked normal here taken out of every map when it
has learned such an exception (models/detector/exception.py; it needs the appearance stream);
models/detector/scores.py turns them into frame scores and one anomaly map. The whole module exports to
one ONNX graph (the flow is its second input).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from models.detector.backbone import MobileNetFeatures
from models.detector.base import missing_stream
from models.detector.exception import CellException
from models.detector.flow import FlowConfig
from models.detector.place import GATE_Z, PlaceStream
from models.detector.predictor import FramePredictor, NetworkConfig

STREAMS = ("motion", "appearance", "place", "prediction", "ordinal")
DEFAULT_STREAMS = ("motion", "appearance", "place")
BANK_CHUNK = 512  # memory cells compared at a time: bounds the distance matrix a batch needs
# the least spread of a stream's statistics: the ordinal head's degree is nearly 0 on normal footage,
# and a rise to 1 is worth 20 z units, not thousands
STREAM_MIN_SCALE = {"ordinal": 0.05}
STREAM_GATES = {"place": GATE_Z}  # the streams that speak only when sure: ScoreCalibration.gate


@dataclass(frozen=True)
class DetectorConfig:
    height: int = 240
    width: int = 360
    streams: tuple[str, ...] = DEFAULT_STREAMS
    flow: FlowConfig = field(default_factory=FlowConfig)
    backbone_blocks: int = 7  # MobileNetV2 layers kept: stride 8, 32 channels
    bank_size: int = 1024  # normal cells remembered by the appearance stream
    predictor: NetworkConfig | None = None  # the prediction stream's network
    exception_cells: int = 0  # cell descriptors kept by the per-cell exception (0: none learned)
    exception_spread: int = 0  # cells around an excepted one that are excepted with it

    def __post_init__(self) -> None:
        unknown = [name for name in self.streams if name not in STREAMS]
        if unknown or not self.streams or len(set(self.streams)) != len(self.streams):
            raise ValueError(f"streams must be distinct names among {', '.join(STREAMS)}, not {self.streams}")
        if "prediction" in self.streams and self.predictor is None:
            raise ValueError("the prediction stream needs a predictor network")
        if problem := missing_stream(self.streams):
            raise ValueError(problem)
        if self.exception_cells and "appearance" not in self.streams:
            raise ValueError("the per-cell exception describes cells by their appearance: add appearance")
        if self.height % 8 or self.width % 8:
            raise ValueError(f"input {self.height}x{self.width} must have sides divisible by 8")

    @classmethod
    def for_size(cls, height: int, width: int, streams: tuple[str, ...] = DEFAULT_STREAMS) -> DetectorConfig:
        predictor = NetworkConfig.for_size(height, width) if "prediction" in streams else None
        return cls(height=height, width=width, streams=tuple(streams), predictor=predictor)

    @property
    def history(self) -> int:
        """Past frames a clip needs besides the current one."""
        predictor = self.predictor.history if self.predictor and "prediction" in self.streams else 0
        return max(self.flow.gap, predictor)

    def for_source(self, source: tuple[int, int] | None, fps: float | None = None) -> DetectorConfig:
        """This detector with the flow that footage of `source` (height, width) pixels at `fps` frames a
        second calls for."""
        return replace(self, flow=FlowConfig.for_source(source, (self.height, self.width), fps))

    def to_dict(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "width": self.width,
            "streams": list(self.streams),
            "flow": self.flow.to_dict(),
            "backbone_blocks": self.backbone_blocks,
            "bank_size": self.bank_size,
            "predictor": self.predictor.to_dict() if self.predictor else None,
            "exception_cells": self.exception_cells,
            "exception_spread": self.exception_spread,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectorConfig:
        predictor = data.get("predictor")
        return cls(
            height=int(data["height"]),
            width=int(data["width"]),
            streams=tuple(data["streams"]),
            flow=FlowConfig.from_dict(data["flow"]),
            backbone_blocks=int(data["backbone_blocks"]),
            bank_size=int(data["bank_size"]),
            predictor=NetworkConfig.from_dict(predictor) if predictor else None,
            exception_cells=int(data.get("exception_cells", 0)),
            exception_spread=int(data.get("exception_spread", 0)),
        )


# the view's scale is followed over a range of 4 to 1 at most: rows where the fitted scale falls below a
# quarter of its largest value (far away, or where the footage shows no motion to measure it) keep that
# quarter, so that the flow's noise there is not blown up into evidence (measured: 0.1 and 0.4 both worse
# on UCSD Ped1, no effect on Ped2)
MIN_ROW_SCALE = 0.25


def fit_row_scale(speed_sum: np.ndarray, speed_squares: np.ndarray) -> np.ndarray:
    """float32 [H] in (0, 1]: the apparent size of things on each row of the view, relative to the row
    where they look largest, from normal footage's optical-flow speed summed over frames and columns per
    row (`speed_sum`, and of its squares). Under a ground plane's perspective an object's size and its
    speed in pixels both grow linearly with the row; the typical speed of what moves on a row,
    sum(s^2) / sum(s) (flow noise, slow, weighs little), is fitted by a line, each row's squared error
    weighted by the square of its motion sum(s), so that rows with little motion follow the rest. Rows are floored at
    MIN_ROW_SCALE; without motion or perspective, ones."""
    speed_sum = np.asarray(speed_sum, dtype=np.float64)
    typical = np.asarray(speed_squares, dtype=np.float64) / np.maximum(speed_sum, 1e-12)
    rows = np.arange(len(speed_sum), dtype=np.float64)
    design = np.stack([np.ones_like(rows), rows], axis=1)
    weight = np.maximum(speed_sum, 0.0)  # least squares weighted by the square of each row's motion
    if not np.isfinite(typical).all() or weight.max() <= 0:
        return np.ones(len(speed_sum), dtype=np.float32)
    weight = weight / weight.max()
    line = design @ np.linalg.lstsq(design * weight[:, None], typical * weight, rcond=None)[0]
    if not np.isfinite(line).all() or line.max() <= 0:
        return np.ones(len(speed_sum), dtype=np.float32)
    return np.maximum(line / line.max(), MIN_ROW_SCALE).astype(np.float32)


class MotionStream(nn.Module):
    """speed [B, H, W] (pixels per frame) -> how much faster than normal at that pixel, relative to the
    normal speed of moving things on its row (`row_scale` [H, 1], relative; ones until fitted)."""

    def __init__(self, height: int, width: int) -> None:
        super().__init__()
        self.register_buffer("normal_speed", torch.zeros(height, width))
        self.register_buffer("row_scale", torch.ones(height, 1))

    def forward(self, speed: torch.Tensor) -> torch.Tensor:
        return (speed - self.normal_speed).clamp(min=0.0) / self.row_scale

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        # weights saved before the row scale existed score as they did: one scale for the whole view
        state_dict.setdefault(prefix + "row_scale", torch.ones_like(self.row_scale))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


# the most a frame's brightness (or contrast) is scaled by, either way: a covered lens or a night view is
# not lit up into its sensor's noise (a camera's exposure swings far less)
MAX_EXPOSURE_GAIN = 4.0


class AppearanceStream(nn.Module):
    """frames [B, 1, H, W] in [0, 1] -> distance of each cell's features to the nearest normal cell,
    upsampled to [B, H, W].

    The memory is kept as [C + 1, M]: -2 * cells^T with the cells' squared norms as the last row, so
    that one matrix product of the queries (with a 1 appended) gives |b|^2 - 2 q.b for every pair and
    the nearest cell is its minimum plus |q|^2. Cells and queries are taken relative to the memory's
    mean: the features are all positive, and without it |q|^2 and |b|^2 would dwarf the distances
    (digits lost to cancellation, more so in fp16).
    """

    def __init__(self, blocks: int, bank_size: int, height: int, width: int) -> None:
        super().__init__()
        self.backbone = MobileNetFeatures(blocks)
        self.size = (height, width)
        channels = self.backbone.out_channels
        self.register_buffer("memory", torch.zeros(channels + 1, bank_size))
        self.register_buffer("center", torch.zeros(channels))
        # the mean brightness of the footage the memory was fitted on (0: frames taken as they come)
        self.register_buffer("brightness", torch.zeros(()))
        # the mean contrast (a frame's spread of brightness) of that footage (0: only the gain is matched)
        self.register_buffer("contrast", torch.zeros(()))

    @property
    def cells(self) -> torch.Tensor:
        """[M, C] the remembered normal cells."""
        return self.memory[:-1].t() * -0.5 + self.center

    def set_bank(self, cells: torch.Tensor) -> None:
        """Remembers `cells` [M, C]; M may differ from the current memory's (see DetectorNet.remember)."""
        if cells.ndim != 2 or cells.shape[1] != self.center.shape[0] or len(cells) == 0:
            raise ValueError(f"bank of shape {tuple(cells.shape)}: [M, {self.center.shape[0]}] needed")
        center = cells.mean(0)
        relative = cells - center
        self.center.copy_(center)
        self.memory = torch.cat([-2.0 * relative.t(), (relative * relative).sum(1)[None]]).to(self.memory)

    def features(self, frames: torch.Tensor) -> torch.Tensor:
        """[B, C, h, w] cell features of `frames` brought to the fitted footage's brightness and contrast."""
        return self.backbone(self.exposed(frames))

    def exposed(self, frames: torch.Tensor) -> torch.Tensor:
        """`frames` [B, 1, H, W] each brought to the mean brightness and contrast of the footage the memory
        was fitted on (where fitted): a camera's automatic exposure and the light of the day change the
        gain of the whole image, fog and dusk its contrast, and the backbone's features with them, so that
        every cell lies farther from the memory (Ped2 with its gain swung by up to 40% every 3 s: the
        appearance stream's normal frames from z 1.5 to 2.1; in fog, its anomalies from z 5.4 to 3.3).
        What moves is measured by the flow, which none of these moves much. One affine map of the frame's grey
        levels: its mean and spread (standard deviation) to the footage's. Weights fitted before the
        contrast was matched (`contrast` 0) scale each frame by one gain to the brightness alone."""
        mean = frames.mean(dim=(1, 2, 3), keepdim=True).clamp(min=1.0 / 255.0)
        gain = (self.brightness / mean).clamp(1.0 / MAX_EXPOSURE_GAIN, MAX_EXPOSURE_GAIN)
        gained = frames * torch.where(self.brightness > 0, gain, torch.ones_like(gain))
        spread = frames.std(dim=(1, 2, 3), keepdim=True).clamp(min=1.0 / 255.0)
        stretch = (self.contrast / spread).clamp(1.0 / MAX_EXPOSURE_GAIN, MAX_EXPOSURE_GAIN)
        stretched = self.brightness + (frames - mean) * stretch
        return torch.where(self.contrast > 0, stretched, gained).clamp(0.0, 1.0)

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        # weights saved before frames were brought to their footage's brightness (or contrast) score as
        # they did
        state_dict.setdefault(prefix + "brightness", torch.zeros_like(self.brightness))
        state_dict.setdefault(prefix + "contrast", torch.zeros_like(self.contrast))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def cell_distances(self, features: torch.Tensor) -> torch.Tensor:
        """[B, C, h, w] -> [B, h, w] Euclidean distance to the nearest remembered cell."""
        batch, channels, height, width = features.shape
        queries = features.permute(0, 2, 3, 1).reshape(-1, channels) - self.center
        augmented = torch.cat([queries, torch.ones_like(queries[:, :1])], dim=1)
        nearest = None
        for memory in self.memory.split(BANK_CHUNK, dim=1):
            chunk = (augmented @ memory).amin(1)
            nearest = chunk if nearest is None else torch.minimum(nearest, chunk)
        assert nearest is not None
        squared = nearest + (queries * queries).sum(1)
        return squared.clamp(min=0.0).sqrt().reshape(batch, height, width)

    def upsample(self, cells: torch.Tensor) -> torch.Tensor:
        """[B, h, w] cell values -> [B, H, W] at the view's resolution."""
        return F.interpolate(cells[:, None], size=self.size, mode="bilinear", align_corners=False)[:, 0]

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.upsample(self.cell_distances(self.features(frames)))


class OrdinalHead(nn.Module):
    """(cell features [B, C, h, w], cell speed above normal [B, h, w]) -> anomaly degree [B, h, w] in [0, 1].

    Inputs besides the features: the speed (an anomaly is often what moves unlike the rest) and the
    cell's position (a place where a false alarm keeps coming back can be learned as normal there).
    The last layer starts at zero with a low bias: an untrained head says "normal" everywhere.
    """

    SILENT_BIAS = -6.0

    def __init__(self, channels: int, hidden: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels + 3, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, 1, 1)
        )
        nn.init.zeros_(self.net[2].weight)
        nn.init.constant_(self.net[2].bias, self.SILENT_BIAS)

    def inputs(self, features: torch.Tensor, speed: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = features.shape
        ys = torch.linspace(-1.0, 1.0, height, device=features.device).view(1, 1, height, 1)
        xs = torch.linspace(-1.0, 1.0, width, device=features.device).view(1, 1, 1, width)
        position = torch.cat([ys.expand(batch, 1, height, width), xs.expand(batch, 1, height, width)], dim=1)
        return torch.cat([features, speed[:, None], position], dim=1)

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.net(inputs)[:, 0]

    def forward(self, features: torch.Tensor, speed: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(self.inputs(features, speed)))


class DetectorNet(nn.Module):
    """(clips uint8 [B, history + 1, H, W], speed float32 [B, H, W]) -> stream maps [B, S, H, W]."""

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__()
        self.config = config
        self.motion = MotionStream(config.height, config.width) if "motion" in config.streams else None
        self.place = PlaceStream(config.height, config.width) if "place" in config.streams else None
        self.appearance = (
            AppearanceStream(config.backbone_blocks, config.bank_size, config.height, config.width)
            if "appearance" in config.streams
            else None
        )
        self.prediction = (
            FramePredictor(config.predictor)
            if "prediction" in config.streams and config.predictor is not None
            else None
        )
        self.ordinal = (
            OrdinalHead(self.appearance.backbone.out_channels)
            if "ordinal" in config.streams and self.appearance is not None
            else None
        )
        self.exception = (
            CellException(
                self.appearance.backbone.out_channels, config.exception_cells, config.exception_spread
            )
            if config.exception_cells and self.appearance is not None
            else None
        )
        # uint8 [N, history + 1, H, W]: clips of the footage the streams were fitted to, kept with the weights
        # (not the served graph) so that self-training can check a candidate on frames it did not mine
        self.anchors: np.ndarray | None = None

    def remember(self, cells: torch.Tensor) -> None:
        """The appearance memory replaced by `cells` [M, C], however many: the config follows, so that the
        model's files describe the memory they hold."""
        assert self.appearance is not None
        self.appearance.set_bank(cells)
        self.config = replace(self.config, bank_size=len(cells))

    def set_exception(
        self,
        descriptors: torch.Tensor,
        events: torch.Tensor,
        speed_weight: float,
        reach: float,
        ratio: float = 0.0,
        spread: int = 0,
        seed: float = 0.0,
        kinds: torch.Tensor | None = None,
    ) -> None:
        """The per-cell exception replaced by these kept cells (CellException.set_kept), however many,
        taking cells at least `seed` from the memory and `spread` cells around each; none removes it. The config follows, as with the memory."""
        assert self.appearance is not None
        if len(descriptors) == 0:
            self.exception = None
        else:
            if self.exception is None:
                self.exception = CellException(self.appearance.backbone.out_channels, len(descriptors))
            self.exception.spread = spread
            self.exception.set_kept(descriptors, events, speed_weight, reach, ratio, seed, kinds)
        self.config = replace(self.config, exception_cells=len(descriptors), exception_spread=spread)

    def copy_exception_from(self, other: DetectorNet) -> None:
        """The per-cell exception replaced by a copy of `other`'s, whole (kept cells, their centre and events,
        speed weight, reach, ratio, seed, spread), sharing no tensor with it; none where `other` has none.
        The config follows, as with set_exception."""
        source = other.exception
        if source is None:
            self.exception = None
        else:
            assert self.appearance is not None
            channels = self.appearance.backbone.out_channels
            if source.kept.shape[1] != channels + 1:
                raise ValueError(f"an exception over {source.kept.shape[1] - 1} channels: {channels} needed")
            self.exception = copy.deepcopy(source).to(self.appearance.memory)
        cells, spread = (0, 0) if source is None else (len(source.kept), source.spread)
        self.config = replace(self.config, exception_cells=cells, exception_spread=spread)

    def place_map(self, speed: torch.Tensor) -> torch.Tensor:
        """[B, H, W]: the place stream's map of speed maps [B, H, W], their speeds taken in the motion
        stream's row units."""
        assert self.motion is not None and self.place is not None
        return self.place(speed / self.motion.row_scale)

    def cell_speed(self, speed: torch.Tensor) -> torch.Tensor:
        """[B, h, w]: the speed above normal, averaged over each appearance cell (zero without motion)."""
        assert self.appearance is not None
        stride = self.appearance.backbone.stride  # a static kernel: the cell grid is the view / stride
        if self.motion is None:
            return torch.zeros(speed.shape[0], speed.shape[1] // stride, speed.shape[2] // stride)
        return F.avg_pool2d(self.motion(speed)[:, None], stride)[:, 0]

    def forward(self, clips: torch.Tensor, speed: torch.Tensor) -> torch.Tensor:
        maps: dict[str, torch.Tensor] = {}
        keep: torch.Tensor | None = None
        if self.motion is not None:
            maps["motion"] = self.motion(speed)
            if self.place is not None:
                maps["place"] = self.place_map(speed)
        if self.appearance is not None:
            features = self.appearance.features(clips[:, -1:].float() / 255.0)
            distances = self.appearance.cell_distances(features)
            maps["appearance"] = self.appearance.upsample(distances)
            if self.ordinal is not None or self.exception is not None:
                cell_speed = self.cell_speed(speed)
            if self.ordinal is not None:
                maps["ordinal"] = self.appearance.upsample(self.ordinal(features, cell_speed))
            if self.exception is not None:
                keep = self.exception(features, cell_speed, distances)
        if self.prediction is not None:
            maps["prediction"] = self.prediction(clips[:, -(self.prediction.config.history + 1) :])
        stacked = torch.stack([maps[name] for name in self.config.streams], dim=1)
        if keep is None:
            return stacked
        # whole cells, as the exception judged them
        return stacked * F.interpolate(keep[:, None], size=stacked.shape[-2:], mode="nearest")
