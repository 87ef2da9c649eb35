"""Which detector an inference worker serves: the pinned model, the published one, or the motion baseline."""

from __future__ import annotations

import logging
from pathlib import Path

import redis

from models.detector.base import Detector
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
    return detector, threshold
