"""The URL picks the client: one Redis, or a Redis Cluster (`redis+cluster://host:port,...`)."""

from __future__ import annotations

import pytest
import redis

from tests.redis_cluster import RedisClusterNodes
from workers.bus import keys, schemas
from workers.bus.connection import connect, free_port, is_cluster, is_cluster_url


def test_a_plain_url_is_one_redis(redis_url: str) -> None:
    client = connect(redis_url)
    assert not is_cluster(client) and not is_cluster_url(redis_url)
    assert client.ping()


@pytest.mark.cluster
def test_a_cluster_url_gives_a_cluster_client_that_routes_by_camera(
    redis_cluster_nodes: RedisClusterNodes, redis_cluster_url: str
) -> None:
    one_node = redis_cluster_url.split(",")[0]  # any node: the client learns the others
    client = connect(one_node)
    assert is_cluster(client) and is_cluster(client.pipeline(transaction=True))
    masters = set()
    for camera in [f"cam{i}" for i in range(8)]:
        with client.pipeline(transaction=True) as pipe:  # a camera's keys share a slot: one transaction
            pipe.xadd(keys.frames_stream(camera), {"seq": "0"})
            pipe.hset(keys.scorer_state_key(camera), "tracker", "{}")
            pipe.set(keys.lease_key(camera), "w")
            pipe.execute()
        masters.add(redis_cluster_nodes.port_of(keys.frames_stream(camera)))
    assert len(masters) >= 2


def test_a_bad_or_unreachable_cluster_url_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="not host:port"):
        connect("redis+cluster://10.0.0.5")
    port = free_port()
    with pytest.raises(ValueError, match=f"127.0.0.1:{port}: no node gave the cluster's slot map"):
        connect(f"redis+cluster://user:secret@127.0.0.1:{port}", timeout_s=0.5)


def test_site_wide_groups_never_share_a_slot_with_a_camera() -> None:
    groups = [keys.ALERTS, keys.ALERT_EVENTS, keys.MODELS, keys.CURRENT_MODEL, keys.FEEDBACK_LABELS]
    tags = {key[key.index("{") + 1 : key.index("}")] for key in groups}
    assert all(tag.startswith("_") for tag in tags)
    with pytest.raises(ValueError):
        schemas.CameraConfig(id="_alerts", source="rtsp://x")
    assert redis.cluster.key_slot(keys.ALERTS.encode()) == redis.cluster.key_slot(keys.ALERT_EVENTS.encode())
