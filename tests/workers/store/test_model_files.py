"""Models without a shared filesystem: a published version's file reaches an inference host with another
data directory through Redis, checked against its SHA-256; bytes that do not match never serve."""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

import pytest
import redis

from models.detector.export import save_detector
from tests.models.detector.test_runtime import tiny_detector
from workers.bus import keys, schemas
from workers.config import Settings
from workers.inference.serving import load_serving_detector
from workers.inference.worker import InferenceWorker
from workers.store import model_files, model_registry


def publish_tiny(client: redis.Redis, site: Settings, version: str, seed: int) -> schemas.ModelVersion:
    """A detector file written in the publishing site's data directory, published."""
    detector = tiny_detector(seed)
    path = site.models_dir / f"{version}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_detector(detector.model, detector.info.metadata | {"version": version}, path)
    return model_registry.publish_file(client, path)


def move_away(site: Settings) -> None:
    """The publishing host's files are not reachable from the inference host."""
    shutil.move(site.data_dir, site.data_dir.with_name(site.data_dir.name + "-elsewhere"))


def test_a_host_without_the_file_fetches_it_checks_it_and_caches_it(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    retrain_host = Settings(data_dir=tmp_path / "retrain-host")
    inference_host = Settings(data_dir=tmp_path / "inference-host")
    published = publish_tiny(redis_client, retrain_host, "site-v1", seed=0)
    assert published.sha256 == hashlib.sha256(Path(published.path).read_bytes()).hexdigest()
    assert published.size_bytes == Path(published.path).stat().st_size
    move_away(retrain_host)
    detector, _ = load_serving_detector(inference_host, redis_client)
    assert detector.info.version == "site-v1"
    cached = inference_host.models_dir / "cache" / "site-v1.pt"
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == published.sha256
    redis_client.delete(keys.model_blob_key("site-v1"))  # the cache serves from now on
    assert load_serving_detector(inference_host, redis_client)[0].info.version == "site-v1"


def test_bytes_that_do_not_match_the_checksum_are_refused_and_the_old_model_serves_on(
    redis_client: redis.Redis, redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    retrain_host = Settings(data_dir=tmp_path / "retrain-host")
    inference_host = Settings(data_dir=tmp_path / "inference-host")
    publish_tiny(redis_client, retrain_host, "site-v1", seed=0)
    worker = InferenceWorker(inference_host, redis_url, worker_id="remote")
    worker.setup()
    assert worker.detector.info.version == "site-v1"
    publish_tiny(redis_client, retrain_host, "site-v2", seed=1)
    move_away(retrain_host)
    blob = bytearray(redis_client.get(keys.model_blob_key("site-v2")))
    blob[len(blob) // 2] ^= 0xFF  # one flipped byte on the way
    redis_client.set(keys.model_blob_key("site-v2"), bytes(blob))
    with caplog.at_level(logging.ERROR):
        worker._check_model()
    assert worker.detector.info.version == "site-v1"
    assert "site-v2" in caplog.text and "checksum" in caplog.text and "refused" in caplog.text
    assert not (inference_host.models_dir / "cache" / "site-v2.pt").exists()


def test_only_the_newest_versions_files_are_kept_in_redis(redis_client: redis.Redis, tmp_path: Path) -> None:
    site = Settings(data_dir=tmp_path / "site")
    for number in range(model_files.BLOBS_KEPT + 2):
        publish_tiny(redis_client, site, f"site-v{number}", seed=0)
    kept = [
        n for n in range(model_files.BLOBS_KEPT + 2) if redis_client.exists(keys.model_blob_key(f"site-v{n}"))
    ]
    assert kept == list(range(2, model_files.BLOBS_KEPT + 2))
