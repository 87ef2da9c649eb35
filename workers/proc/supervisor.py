"""Runs Vigil's processes as children, restarts any that dies, and stops them all on request.

Each child is a process whose command line the caller builds (`vigil up`: a `vigil <command>`); a crash is logged with its exit code and the child is started
again after a backoff that grows while it keeps crashing and resets once it has run for a while.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field

from workers.proc.process import Backoff

log = logging.getLogger(__name__)

STABLE_AFTER_S = 30.0  # a child that ran this long is healthy again: its backoff resets


@dataclass
class Child:
    name: str
    command: list[str]  # the child's whole command line
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restarts: int = 0
    restart_at: float | None = None
    backoff: Backoff = field(default_factory=lambda: Backoff(max_s=30.0, initial_s=0.5))


class Supervisor:
    def __init__(self, children: list[Child], env: dict[str, str]) -> None:
        self.children = children
        self.env = env
        self.stop_event = threading.Event()

    def _start(self, child: Child) -> None:
        child.process = subprocess.Popen(child.command, env=self.env)
        child.started = time.monotonic()
        child.restart_at = None
        log.info("started %s (pid %d)", child.name, child.process.pid)

    def run(self, poll_s: float = 0.2) -> int:
        for child in self.children:
            self._start(child)
        while not self.stop_event.wait(poll_s):
            for child in self.children:
                self._watch(child)
        self.shutdown()
        return 0

    def _watch(self, child: Child) -> None:
        now = time.monotonic()
        if child.restart_at is not None:
            if now >= child.restart_at:
                child.restarts += 1
                self._start(child)
            return
        assert child.process is not None
        code = child.process.poll()
        if code is None:
            if now - child.started > STABLE_AFTER_S:
                child.backoff.reset()
            return
        delay = child.backoff.next_delay()
        log.warning("%s exited with code %s; restarting in %.1f s", child.name, code, delay)
        child.restart_at = now + delay

    def stop(self) -> None:
        self.stop_event.set()

    def shutdown(self, timeout_s: float = 15.0) -> None:
        running = [c.process for c in self.children if c.process is not None and c.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for process in running:
            try:
                process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.warning("pid %d did not stop in %.0f s: killed", process.pid, timeout_s)
                process.kill()
                process.wait()
        log.info("all processes stopped")

    def install_signal_handlers(self) -> None:
        def on_signal(signum: int, _frame: object) -> None:
            log.info("%s received: stopping", signal.Signals(signum).name)
            self.stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    def pids(self) -> dict[str, int | None]:
        return {
            c.name: c.process.pid if c.process and c.process.poll() is None else None for c in self.children
        }


def child_env(redis_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env["VIGIL_REDIS_URL"] = redis_url
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env
