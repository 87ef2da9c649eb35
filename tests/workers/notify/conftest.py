"""A real MQTT broker: Debian's mosquitto on a free loopback port with its own config, stopped by the
fixture; skipped with a clear message where the binary is missing (`apt-get install mosquitto`)."""

from __future__ import annotations

import getpass
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from workers.bus.connection import free_port

MOSQUITTO = shutil.which("mosquitto") or next(
    (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).is_file()), None
)


class Broker:
    """mosquitto with persistence (sessions and retained messages survive a restart, as on a site)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self.config = workdir / "mosquitto.conf"
        # as its caller's user: started as root it would drop to `mosquitto`, who cannot write the test's dir
        self.config.write_text(
            f"user {getpass.getuser()}\nlistener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {workdir}/\nlog_dest file {workdir}/mosquitto.log\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 10.0) -> None:
        assert MOSQUITTO is not None
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.config)])
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                assert self.process.poll() is None, "mosquitto exited at start"
                assert time.monotonic() < deadline, "mosquitto did not listen in time"
                time.sleep(0.05)

    def stop(self) -> None:
        """A clean stop (SIGTERM): mosquitto saves its sessions and retained messages."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed: apt-get install -y mosquitto (`make test` does it)")
    server = Broker(tmp_path)
    server.start()
    yield server
    server.stop()
