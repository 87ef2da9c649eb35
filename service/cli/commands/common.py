"""Helpers shared by the command modules."""

from __future__ import annotations

import logging

from workers.bus.connection import EMBEDDED_REDIS_DIR, running_embedded_url
from workers.config import Settings

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
