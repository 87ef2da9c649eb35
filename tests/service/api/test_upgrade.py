"""An upgraded site through the API: the records the previous release wrote under its key names (layout 1)
are all served once the API has started (it migrates the keys before serving)."""

from __future__ import annotations

import redis
from fastapi.testclient import TestClient

from service.api.app import create_app
from tests.service.conftest import make_settings
from tests.workers.store.test_key_migration import to_layout_1, write_site


def test_the_api_serves_an_upgraded_sites_records(redis_client: redis.Redis, redis_url: str) -> None:
    write_site(redis_client)
    to_layout_1(redis_client)
    with TestClient(create_app(make_settings(redis_url))) as api:
        assert [alert["id"] for alert in api.get("/api/alerts").json()["items"]] == ["a1", "a0"]
        assert [alert["id"] for alert in api.get("/api/alerts?camera=cam2").json()["items"]] == ["a1"]
        assert [label["id"] for label in api.get("/api/feedback?camera=cam1").json()["items"]] == ["1"]
        models = api.get("/api/models").json()
        assert models["current"] == "v2" and len(models["versions"]) == 2 and len(models["cycles"]) == 2
