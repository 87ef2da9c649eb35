"""Property-based fuzzing of the API from its own OpenAPI schema (schemathesis): generated requests, valid
and invalid, to every operation of a real server on loopback over the test Redis; no answer may be a 500,
and answers must match the schema."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from service.api.app import create_app
from tests.service.conftest import OPERATOR_TOKEN, make_settings
from workers.bus.connection import EmbeddedRedis, connect, free_port

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402  (schemathesis brings hypothesis)
from schemathesis.checks import (  # noqa: E402
    allow_header_conformance,
    not_a_server_error,
    positive_data_acceptance,
)

pytestmark = pytest.mark.timeout(120)

MAX_EXAMPLES = 30
# Checks left out, and why: opaque values (an alert cursor, a time in two notations, a body id that must
# equal the path's) can be schema-valid and still refused with a 422; the Allow header of a 405 is Starlette's.
LENIENT_CHECKS = (positive_data_acceptance, allow_header_conformance)


@pytest.fixture(scope="module")
def api_base_url(redis_server: EmbeddedRedis) -> Iterator[str]:
    """The API under uvicorn on loopback (its real lifespan), over a clean test Redis."""
    connect(redis_server.url).flushall()
    app = create_app(make_settings(redis_server.url, operator_token=OPERATOR_TOKEN))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the API did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


# The schema the app itself publishes at /openapi.json (building the app connects to nothing).
schema = schemathesis.openapi.from_dict(create_app(make_settings("redis://127.0.0.1:1/0")).openapi())


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,  # no example database left in the working tree
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_no_server_error_and_answers_match_the_schema(case: schemathesis.Case, api_base_url: str) -> None:
    excluded = list(LENIENT_CHECKS)
    if case.path == "/readyz":  # its documented 503 says "no live workers": none run in this test
        excluded.append(not_a_server_error)
    response = case.call_and_validate(
        base_url=api_base_url,
        headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
        timeout=10,
        excluded_checks=excluded,
    )
    assert response.status_code < 500 or (case.path == "/readyz" and response.status_code == 503)
