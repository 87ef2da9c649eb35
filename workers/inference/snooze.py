"""The snoozes in force for the inference worker: a snoozed camera raises no alert (its open one ends as
its scores count as normal), a snoozed zone is ignored like an ignore zone until the snooze ends."""

from __future__ import annotations

import numpy as np
import redis

from models.detector.scores import ignore_mask
from workers.bus import schemas
from workers.store.snoozes import active_snoozes


class Snoozes:
    def __init__(self) -> None:
        self.by_camera: dict[str, schemas.Snooze] = {}
        self._masks: dict[tuple[str, str], np.ndarray | None] = {}

    def refresh(self, client: redis.Redis, now_ts: float) -> None:
        self.by_camera = active_snoozes(client, now_ts)

    def silenced(self, camera: str, ts: float) -> bool:
        snooze = self.by_camera.get(camera)
        return snooze is not None and ts < snooze.until_ts

    def mask(
        self, config: schemas.CameraConfig, base: np.ndarray | None, height: int, width: int
    ) -> np.ndarray | None:
        """The camera's ignore mask with its snoozed zones added (base when none is snoozed)."""
        snooze = self.by_camera.get(config.id)
        if snooze is None or not snooze.zones:
            return base
        zones = [z.points for z in config.ignore_zones] + [z.points for z in snooze.zones]
        key = (config.id, repr((zones, height, width)))
        if key not in self._masks:
            if len(self._masks) > 256:  # snoozes come and go: the cache must not grow for ever
                self._masks.clear()
            self._masks[key] = ignore_mask(height, width, zones)
        return self._masks[key]
