"""Which detector an inference worker serves: the pinned model, the published one, or the motion baseline."""

from __future__ import annotations

import logging
from pathlib import Path

import redis

from models.detector.base import Detector
from models.detector.flow import FLOW_SECONDS, gap_for
from models.detector.motion import MotionBaseline
from workers.config import Settings
from workers.store import model_files, model_registry

log = logging.getLogger(__name__)


def load_serving_detector(settings: Settings, client: redis.Redis) -> tuple[Detector, float | None]:
    """The pinned model (settings), else the published current version, else the motion baseline; with the
    version's adaptive alert threshold (None: the configured one)."""
    from models.detector.runtime import load_detector  # the learned runtime pulls in ONNX Runtime / torch

    path = settings.inference.model_path
    threshold = None
    if path is None:
        current = model_registry.current_version(client)
        if current is not None:  # this host's copy of its file: fetched from Redis where it has none
            path = model_files.local_file(client, current, settings.models_dir / "cache")
            threshold = current.alert_threshold
    if path is None:
        log.info("no model configured or published: scoring with the motion baseline")
        return MotionBaseline(settings.analysis.height, settings.analysis.width), None
    detector = load_detector(Path(path), device=settings.inference.device, threads=settings.inference.threads)
    _warn_on_frame_rate(detector, settings.analysis.fps)
    return detector, threshold


def _warn_on_frame_rate(detector: Detector, analysis_fps: float) -> None:
    """A model whose flow spans another time at the cameras' analysis rate than at its footage's scores
    their speeds on another scale: say so (models/detector/flow.gap_for)."""
    gap = detector.info.metadata.get("detector", {}).get("flow", {}).get("gap")
    if gap is not None and int(gap) != gap_for(analysis_fps):
        log.warning(
            "model %s measures the flow over %d frames (%g s of the footage it was fitted to), but cameras "
            "are analysed at %g frames/s (VIGIL_ANALYSIS__FPS), where that spans %.2f s: fit it to the "
            "cameras' own footage (vigil train --from-camera) or set their fps to the footage's",
            detector.info.version,
            int(gap),
            FLOW_SECONDS,
            analysis_fps,
            int(gap) / analysis_fps,
        )
