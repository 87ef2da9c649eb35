"""The alert thresholds that operators' labels ask of the inference worker's cameras
(models/scoring/label_threshold.py), looked at again every REFRESH_S: a label takes effect within that
time, at no cost per frame, and a camera's labels are read again only when some were added or deleted."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import redis

from models.scoring.label_threshold import label_threshold
from workers.store.labels import alert_verdict_peaks, labels_version

log = logging.getLogger(__name__)
REFRESH_S = 10.0


def camera_label_threshold(client: redis.Redis, camera: str, ceiling: float) -> float | None:
    """The threshold the camera's labelled alerts ask for now (None: none, or labels never move one)."""
    return label_threshold(*alert_verdict_peaks(client, camera), ceiling) if ceiling > 0 else None


class LabelThresholds:
    def __init__(self, ceiling: float) -> None:
        self.ceiling = ceiling  # AlertSettings.label_ceiling; 0: labels never move a threshold
        self.by_camera: dict[str, float | None] = {}
        self._versions: dict[str, tuple[int, float]] = {}
        self._next_read = 0.0

    def _read(self, client: redis.Redis, camera: str) -> float | None:
        if self.ceiling <= 0:
            return None
        version = labels_version(client, camera)
        if camera in self.by_camera and self._versions.get(camera) == version:
            return self.by_camera[camera]
        self._versions[camera] = version
        return camera_label_threshold(client, camera, self.ceiling)

    def of(self, client: redis.Redis, camera: str) -> float | None:
        """The camera's threshold asked by its labels (read now for a camera not seen before)."""
        if camera not in self.by_camera:
            self.by_camera[camera] = self._read(client, camera)
        return self.by_camera[camera]

    def refresh(self, client: redis.Redis, cameras: Iterable[str]) -> set[str]:
        """When due, reads the cameras' labels again; returns the cameras whose threshold changed."""
        if time.monotonic() < self._next_read:
            return set()
        self._next_read = time.monotonic() + REFRESH_S
        changed = set()
        for camera in cameras:
            value = self._read(client, camera)
            if camera in self.by_camera and value != self.by_camera[camera]:
                log.info("camera %s: alert threshold asked by operators' labels now %s", camera, value)
                changed.add(camera)
            self.by_camera[camera] = value
        return changed
