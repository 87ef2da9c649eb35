"""Helpers shared by the command modules."""

from __future__ import annotations

import logging

import redis

from workers.bus.connection import EMBEDDED_REDIS_DIR, connect, running_embedded_url
from workers.config import Settings
from workers.proc.redaction import redact
from workers.store.key_migration import migrate_key_layout

log = logging.getLogger("vigil")


class CommandError(Exception):
    """A user-facing failure: the message is printed, the exit code is 2, no traceback."""


def require_redis_url(settings: Settings, command: str) -> str:
    """The Redis server a single part must join: VIGIL_REDIS_URL, else the embedded one of a running `vigil up`."""
    if settings.redis_url:
        return settings.redis_url
    embedded = running_embedded_url(settings.data_dir / EMBEDDED_REDIS_DIR)
    if embedded:
        log.info("using the embedded Redis of `vigil up` at %s", embedded)
        return embedded
    raise CommandError(
        f"`vigil {command}` runs one part of Vigil and needs the shared Redis: set VIGIL_REDIS_URL "
        "(e.g. redis://localhost:6379/0), or run everything on this machine with `vigil up`."
    )


def connect_site(url: str) -> redis.Redis:
    """A client of the shared Redis, its keys in the layout now (an upgraded site's are moved first)."""
    client = connect(url)
    try:
        migrate_key_layout(client)
    except redis.ConnectionError as exc:
        client.close()
        raise CommandError(f"cannot reach Redis at {redact(url)}: {exc}") from exc
    return client
