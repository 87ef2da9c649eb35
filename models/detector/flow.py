"""Dense optical flow (OpenCV's DIS: Kroeger et al., ECCV 2016) between a clip's frames: the motion evidence of the detector.

Speed is what sets most anomalies in a walkway or a yard apart (a bicycle, a car, someone running), and
optical flow measures it whatever the contrast of the moving thing, which a frame difference or a
prediction error does not. The flow is taken over `gap` frames (a displacement of a few pixels is
measured far more reliably than one under a pixel) and divided by it: pixels per frame. The gap spans
0.2 s of the footage, 2 frames at UCSD's 10 frames/s where every constant was chosen: 1 frame at 5
frames/s, 5 at 25 (`gap_for`). At 5 frames/s a gap of 2 frames (0.4 s) cost Ped2's half-frame-rate copy
0.9494 against 0.9710 causal AUC with 1 frame (0.9769 at 10 frames/s).

The settings are DIS's "medium" quality at the finest pyramid level but one, with fewer iterations: on
2 CPU cores about 4 ms for a 240x360 frame. Footage that carries the analysis size's pixels (a camera at
least that large) is measured at full resolution instead (`FlowConfig.for_source`).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from models.scoring.sampling import frames_in

FLOW_SECONDS = 0.2  # the time the flow spans: 2 frames at 10 frames/s
DEFAULT_GAP = 2


def gap_for(fps: float | None) -> int:
    """Frames between the flow's two images for footage at `fps`: the nearest to FLOW_SECONDS, at least
    1; DEFAULT_GAP where the rate is not known."""
    if fps is None or fps <= 0:
        return DEFAULT_GAP
    return frames_in(FLOW_SECONDS, fps)


@dataclass(frozen=True)
class FlowConfig:
    gap: int = DEFAULT_GAP  # frames between the two images the flow is measured on
    finest_scale: int = 1  # pyramid level the flow is refined down to (0: full resolution)
    patch_size: int = 8
    patch_stride: int = 4
    descent_iterations: int = 4
    refinement_iterations: int = 2  # variational refinement: what makes the flow of small objects exact
    # the view's own motion is taken out of its flow (`view_motion`): a camera that sways (wind on its
    # pole, a vehicle passing) moves the whole view, and what moves by itself is what moves against it
    steadied: bool = True

    @classmethod
    def for_source(
        cls, source: tuple[int, int] | None, analysis: tuple[int, int], fps: float | None = None
    ) -> FlowConfig:
        """The flow for footage at `fps` frames a second (its gap, `gap_for`) whose frames are `source`
        (height, width) before they are resized to the `analysis` size (None: not known). Where the footage has at least the analysis size's pixels, the
        flow is refined down to full resolution, where a far or small object's few pixels of motion are
        (Ped2 at its native 360x240: raw AUC 0.9698 -> 0.9764), with patches 5 px apart instead of 4 and
        without the variational refinement, which would cost that level 2-3x the time for nothing measured
        (0.9749 with both). Where the analysis size upscales the footage (Ped1's 238x158 to 360x240), full
        resolution measures the interpolation, not the scene (Ped1 0.8621 -> 0.8441): the flow stops at
        half resolution, as it does when the source is unknown."""
        gap = gap_for(fps)
        if source is None or source[0] < analysis[0] or source[1] < analysis[1]:
            return cls(gap=gap)
        return cls(gap=gap, finest_scale=0, patch_stride=5, refinement_iterations=0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FlowConfig:
        return cls(**{"steadied": False, **data})  # models saved before it score as they did


_local = threading.local()


def _dis(config: FlowConfig) -> cv2.DISOpticalFlow:
    """A DIS instance per thread and configuration (instances keep buffers and are not thread-safe)."""
    cache: dict[FlowConfig, cv2.DISOpticalFlow] = getattr(_local, "dis", None) or {}
    _local.dis = cache
    if config not in cache:
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        dis.setFinestScale(config.finest_scale)
        dis.setPatchSize(config.patch_size)
        dis.setPatchStride(config.patch_stride)
        dis.setGradientDescentIterations(config.descent_iterations)
        dis.setVariationalRefinementIterations(config.refinement_iterations)
        cache[config] = dis
    return cache[config]


def flow_speed(earlier: np.ndarray, later: np.ndarray, config: FlowConfig) -> np.ndarray:
    """float32 [H, W]: pixels per frame moved between two uint8 frames `config.gap` frames apart."""
    flow = _dis(config).calc(earlier, later, None)
    if config.steadied and (motion := view_motion(flow, config.gap)) is not None:
        flow -= motion
    return cv2.magnitude(flow[..., 0], flow[..., 1]) * (1.0 / config.gap)


STEADY_STRIDE = 4  # the view's motion is measured on every 4th pixel of every 4th row
# pixels per frame under which the view is taken to stand still, so that a fixed camera's flow is left as
# it was: UCSD Ped1's and Ped2's median flow reaches at most 0.083 a frame (every frame of both splits)
STEADY_MIN_SPEED = 0.1
# the share of the view that must move with the median (nearer to it than to standing still) for it to be
# the camera's own motion: 86% or more of the pixels of swaying copies of UCSD Ped1 and Ped2 (1 px) in 95%
# of their frames, about half of a fixed camera's (a coin toss about a median near 0); a train or a bus
# filling half of the view moves no more than that half
STEADY_SHARE = 0.7


def view_motion(flow: np.ndarray, gap: int) -> np.ndarray | None:
    """float32 [2]: the motion of the view itself in a flow field [H, W, 2] over `gap` frames, the median
    (x, y) of its flow, where the camera moved: the median reaches STEADY_MIN_SPEED a frame and most of the
    view moves with it (STEADY_SHARE). None where the view stands still, or where one thing filling much of
    it moves one way. Most of a fixed camera's view is background, which moves only when the camera does."""
    sampled = flow[::STEADY_STRIDE, ::STEADY_STRIDE].reshape(-1, 2)
    median = np.median(sampled, axis=0).astype(np.float32)
    if float(np.hypot(*median)) < STEADY_MIN_SPEED * gap:
        return None
    with_it = np.hypot(*(sampled - median).T) < np.hypot(*sampled.T)
    return median if float(with_it.mean()) >= STEADY_SHARE else None


_pool: ThreadPoolExecutor | None = None


def clip_speeds(clips: np.ndarray, config: FlowConfig) -> np.ndarray:
    """float32 [B, H, W]: the speed map of each clip's last frame (uint8 clips [B, T, H, W], T > gap).

    Frames are computed in parallel threads, one frame a thread (OpenCV works outside the GIL), with
    OpenCV's own threading turned off: on 2 cores that is 1.3x the throughput of OpenCV splitting each
    frame, and a batch of several cameras' frames uses every core. A single frame (one camera) is split
    by OpenCV instead.
    """
    global _pool
    if clips.shape[1] <= config.gap:
        raise ValueError(f"clips of {clips.shape[1]} frames have no frame {config.gap} before the last")
    clips = np.ascontiguousarray(clips, dtype=np.uint8)
    cores = max(cv2.getNumberOfCPUs(), 1)
    pairs = [(clip[-1 - config.gap], clip[-1]) for clip in clips]
    if len(pairs) == 1:
        cv2.setNumThreads(cores)
        return flow_speed(*pairs[0], config)[None]
    cv2.setNumThreads(1)
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=cores, thread_name_prefix="flow")
    return np.stack(list(_pool.map(lambda pair: flow_speed(*pair, config), pairs)))
