"""Polling until something has happened: a worker, a service or a browser works on its own clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T],
    timeout_s: float = 15.0,
    what: str = "the condition",
    every_s: float = 0.05,
    retry_on: tuple[type[Exception], ...] = (),
) -> T:
    """Calls `condition` every `every_s` until it returns something truthy, and returns that.

    An exception in `retry_on` counts as "not yet" (a service still starting refuses connections);
    any other is raised at once. Past `timeout_s`, an AssertionError names `what`.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = condition()
        except retry_on:
            result = None
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(every_s)
