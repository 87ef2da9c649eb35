"""The model registry: what a published detector file's version records of it."""

from __future__ import annotations

from pathlib import Path

import redis

from models.detector.base import PLACE_SILENCED_CAMERAS
from models.detector.export import save_detector
from tests.models.conftest import walkers_detector
from workers.store import model_registry


def test_a_published_file_names_the_cameras_its_place_map_no_longer_knows(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    """A model the retraining worker served with its place map silenced for a moved camera, published
    again by hand (a rollback from a file, another site's copy): the cameras' endpoints still say so."""
    walkers = walkers_detector()
    path = tmp_path / "walkers.pt"
    save_detector(walkers.model, {**walkers.info.metadata, PLACE_SILENCED_CAMERAS: ["lobby"]}, path)
    published = model_registry.publish_file(redis_client, path)
    assert published.place_silenced_cameras == ["lobby"]
    current = model_registry.current_version(redis_client)
    assert current is not None and current.place_silenced_cameras == ["lobby"]
