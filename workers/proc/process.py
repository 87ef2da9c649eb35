"""The process base every Vigil worker runs on.

API
---
`WorkerProcess(settings, redis_url, *, worker_id=None)` -- subclass it, set `role`, and override:

- `setup()`          once before the loop (may raise redis.ConnectionError: it is retried with backoff);
- `step()`           one unit of work (poll a config, score a batch, ...); called until stop is asked;
- `teardown()`       once after the loop, also after a failed setup; must not raise;
- `heartbeat_info()` a dict published with every heartbeat (e.g. cameras served, model version).

`run() -> int` drives it: installs SIGTERM/SIGINT handlers (main thread only) that set `stop_event`, starts
a heartbeat thread that writes a `schemas.WorkerHeartbeat` into `keys.WORKERS` every `settings.heartbeat_s`
(removed again at exit; entries of workers silent for STALE_HEARTBEAT_S, killed without that chance, are
removed too), calls `setup()` then `step()` repeatedly, waiting `step_interval_s` between
steps, and on `redis.ConnectionError` logs once, waits with exponential backoff (capped at
`settings.reconnect_max_s`) and carries on. `stop()` asks the loop to end from any thread; `wait(s)`
sleeps but wakes at stop and says whether stop was asked. Log lines go through `self.log`, prefixed
with the worker id; `event(name, **fields)` logs one `name key=value ...` line for machine reading.

Also here: `Backoff` (exponential delays with a cap, shared by source reconnects and the supervisor).
Every message naming a source goes through `workers.redaction.redact`.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from contextlib import suppress
from types import FrameType
from typing import Any, ClassVar, Literal

import redis
from pydantic import ValidationError

from workers.bus import keys, schemas
from workers.bus.connection import connect
from workers.config import Settings
from workers.proc.redaction import redact
from workers.store.key_migration import migrate_key_layout

WorkerRole = Literal["ingest", "inference", "retrain", "api", "notify"]

# A heartbeat this old is of a worker that died without removing it (kill -9, power loss): it is removed,
# so that dead workers do not pile up in keys.WORKERS (and in the metrics) after every crash.
STALE_HEARTBEAT_S = 300.0
PRUNE_INTERVAL_S = 60.0
HEARTBEAT_PERIODS_ALIVE = 3  # a worker counts as alive while its last heartbeat is this many periods old


def read_heartbeats(client: redis.Redis) -> list[schemas.WorkerHeartbeat]:
    """Every readable heartbeat in keys.WORKERS (one of an incompatible version is skipped)."""
    beats = []
    for raw in client.hgetall(keys.WORKERS).values():
        try:
            beats.append(schemas.WorkerHeartbeat.model_validate_json(raw))
        except ValidationError:
            continue
    return beats


class Backoff:
    """Exponential delays: initial_s, 2*initial_s, ... capped at max_s; reset() after a success."""

    def __init__(self, max_s: float, initial_s: float = 0.5) -> None:
        self.initial_s = min(initial_s, max_s)
        self.max_s = max_s
        self._next_s = self.initial_s

    def next_delay(self) -> float:
        delay = self._next_s
        self._next_s = min(self._next_s * 2, self.max_s)
        return delay

    def reset(self) -> None:
        self._next_s = self.initial_s


def format_fields(**fields: Any) -> str:
    """`key=value` pairs, values with spaces quoted, for log lines that tools can parse."""
    parts = []
    for name, value in fields.items():
        text = str(value)
        parts.append(f"{name}={text!r}" if (" " in text or not text) else f"{name}={text}")
    return " ".join(parts)


class WorkerLogAdapter(logging.LoggerAdapter):  # type: ignore[type-arg]
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self.extra['worker']}] {msg}", kwargs  # type: ignore[index]


class WorkerProcess:
    role: ClassVar[WorkerRole]
    step_interval_s: float = 1.0

    def __init__(self, settings: Settings, redis_url: str, *, worker_id: str | None = None) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.worker_id = (
            worker_id or f"{self.role}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        )
        self.redis = connect(redis_url)
        self.stop_event = threading.Event()
        self.started_ts = time.time()
        self.log = WorkerLogAdapter(logging.getLogger(f"vigil.{self.role}"), {"worker": self.worker_id})

    # ------------------------------------------------------------ to override
    def setup(self) -> None:
        """Prepare before the first step."""

    def step(self) -> None:
        raise NotImplementedError

    def teardown(self) -> None:
        """Release what setup() and step() took."""

    def heartbeat_info(self) -> dict[str, Any]:
        return {}

    # ------------------------------------------------------------ helpers
    def stop(self) -> None:
        self.stop_event.set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True when stop was asked."""
        return self.stop_event.wait(max(seconds, 0.0))

    def event(self, name: str, level: int = logging.INFO, **fields: Any) -> None:
        self.log.log(level, "%s %s", name, format_fields(**fields))

    # ------------------------------------------------------------ the loop
    def run(self) -> int:
        self._install_signal_handlers()
        heartbeat = threading.Thread(
            target=self._heartbeat_loop, name=f"{self.worker_id}-heartbeat", daemon=True
        )
        heartbeat.start()
        self.event("worker_started", role=self.role, pid=os.getpid())
        backoff = Backoff(self.settings.reconnect_max_s)
        ready = False
        redis_down = False
        try:
            while not self.stop_event.is_set():
                try:
                    if not ready:
                        migrate_key_layout(self.redis)  # an upgraded site's keys, before any read
                        self.setup()
                        ready = True
                    self.step()
                except redis.ConnectionError as exc:
                    delay = backoff.next_delay()
                    if not redis_down:
                        self.event(
                            "redis_unavailable", logging.WARNING, url=redact(self.redis_url), error=exc
                        )
                    redis_down = True
                    self.wait(delay)
                    continue
                if redis_down:
                    self.event("redis_reconnected", url=redact(self.redis_url))
                    redis_down = False
                    backoff.reset()
                self.wait(self.step_interval_s)
        finally:
            self.stop_event.set()
            self.teardown()
            heartbeat.join(timeout=self.settings.heartbeat_s + 5)
            with suppress(redis.ConnectionError):
                self.redis.hdel(keys.WORKERS, self.worker_id)
            self.redis.close()
            self.event("worker_stopped", role=self.role)
        return 0

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals reach the main thread only; an embedding caller calls stop()

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            self.event("stop_requested", signal=signal.Signals(signum).name)
            self.stop_event.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    def _prune_stale_heartbeats(self) -> None:
        horizon = time.time() - STALE_HEARTBEAT_S
        for worker_id, raw in self.redis.hgetall(keys.WORKERS).items():
            try:
                stale = schemas.WorkerHeartbeat.model_validate_json(raw).ts < horizon
            except ValidationError:
                stale = True  # unreadable: no worker can be counted on through it
            if stale:
                self.redis.hdel(keys.WORKERS, worker_id)
                self.event("stale_heartbeat_removed", worker=worker_id.decode(errors="replace"))

    def _heartbeat_loop(self) -> None:
        host = socket.gethostname()
        next_prune = 0.0
        while not self.stop_event.is_set():
            beat = schemas.WorkerHeartbeat(
                id=self.worker_id,
                role=self.role,
                pid=os.getpid(),
                host=host,
                started_ts=self.started_ts,
                info=self.heartbeat_info(),
            )
            with suppress(redis.ConnectionError):  # the main loop reports the outage; the next beat retries
                self.redis.hset(keys.WORKERS, self.worker_id, beat.model_dump_json())
                if time.monotonic() >= next_prune:
                    self._prune_stale_heartbeats()
                    next_prune = time.monotonic() + PRUNE_INTERVAL_S
            self.wait(self.settings.heartbeat_s)
