"""Model files through Redis, so inference hosts need no shared filesystem.

A published version's served file (.onnx or .pt) is stored whole under keys.model_blob_key(version) and its
SHA-256 recorded in the ModelVersion. A host that lacks the file (or holds a different one at that path)
fetches the bytes, checks them against the recorded checksum and keeps them in its models cache; bytes that
do not match are refused (ModelFileError) and never written to the cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path

import redis

from workers.bus import keys
from workers.bus.schemas import ModelVersion

log = logging.getLogger(__name__)

BLOBS_KEPT = 10  # model files kept in Redis: those of the newest versions made current (rollback targets)


class ModelFileError(RuntimeError):
    """A version's file cannot be had: not in Redis, or its bytes do not match the recorded checksum."""


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def store(client: redis.Redis, version: ModelVersion) -> ModelVersion:
    """Stores the version's file in Redis; returns the version with its checksum and size recorded."""
    data = Path(version.path).read_bytes()
    client.set(keys.model_blob_key(version.version), data)
    return version.model_copy(update={"sha256": sha256_of(data), "size_bytes": len(data)})


def has_file(client: redis.Redis, version: ModelVersion) -> bool:
    """Whether the version's file can still be had, here or from Redis."""
    return Path(version.path).is_file() or bool(client.exists(keys.model_blob_key(version.version)))


def prune(client: redis.Redis, keep: list[str]) -> None:
    """Deletes the stored files of every version not in `keep`."""
    doomed = [version for version in _stored_versions(client) if version not in keep]
    # one at a time: each file has its own cluster slot
    removed = sum(int(client.delete(keys.model_blob_key(version))) for version in doomed)
    if removed:
        log.info("model files of %d older versions removed from Redis", removed)


def _stored_versions(client: redis.Redis) -> list[str]:
    versions = (ModelVersion.model_validate_json(raw) for raw in client.hvals(keys.MODELS))
    return [version.version for version in versions if version.sha256 is not None]


def local_file(client: redis.Redis, version: ModelVersion, cache_dir: Path) -> Path:
    """A local path holding the version's file: its own path when that file matches the checksum (a shared
    or the same filesystem), else the models cache, filled from Redis. Raises ModelFileError."""
    path = Path(version.path)
    if version.sha256 is None:  # recorded before files were kept in Redis: only the path can serve
        return path
    if path.is_file() and sha256_of(path.read_bytes()) == version.sha256:
        return path
    safe_name = re.sub(r"[^A-Za-z0-9_.-]", "_", version.version)
    cached = Path(cache_dir) / f"{safe_name}{path.suffix}"
    if cached.is_file() and sha256_of(cached.read_bytes()) == version.sha256:
        return cached
    data = client.get(keys.model_blob_key(version.version))
    if data is None:
        raise ModelFileError(f"model {version.version}: no file at {path} and none in Redis")
    if (actual := sha256_of(data)) != version.sha256:
        log.error(
            "model %s: the file in Redis has SHA-256 %s, its record says %s: refused",
            version.version,
            actual,
            version.sha256,
        )
        raise ModelFileError(
            f"model {version.version}: checksum mismatch (file {actual}, record {version.sha256})"
        )
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_name(f".{cached.name}.{os.getpid()}.part")
    partial.write_bytes(data)
    partial.replace(cached)  # atomic: another process never loads half a file
    log.info(
        "model %s: fetched from Redis (%d bytes, checksum ok) into %s", version.version, len(data), cached
    )
    return cached
