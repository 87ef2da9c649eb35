"""A real MQTT broker: Debian's mosquitto on a free loopback port with its own config, stopped by the
fixture; skipped with a clear message where the binary is missing (`apt-get install mosquitto`). A broker
may ask for a user and password (a mosquitto_passwd file) and speak TLS only (a CA and a server
certificate made with openssl in the test's folder)."""

from __future__ import annotations

import getpass
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from workers.bus.connection import free_port

MOSQUITTO = shutil.which("mosquitto") or next(
    (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).is_file()), None
)


MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")
OPENSSL = shutil.which("openssl")


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    certificate: Path
    key: Path


def make_tls_files(folder: Path) -> TlsFiles:
    """A self-signed CA and a server certificate it signed for 127.0.0.1 (EC keys: quick to make)."""
    if OPENSSL is None:
        pytest.skip("openssl is not installed: apt-get install -y openssl")
    ca, ca_key = folder / "ca.crt", folder / "ca.key"
    certificate, key, request = folder / "server.crt", folder / "server.key", folder / "server.csr"
    extensions = folder / "server.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for command in (
        ["req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=Vigil test CA"],
        ["req", *ec, "-keyout", key, "-out", request, "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out",
         certificate, "-days", "2", "-extfile", extensions],
    ):  # fmt: skip
        subprocess.run([OPENSSL, *map(str, command)], check=True, capture_output=True)
    return TlsFiles(ca=ca, certificate=certificate, key=key)


class Broker:
    """mosquitto with persistence (sessions and retained messages survive a restart, as on a site);
    with `user` (name, password) it admits only that user, with `tls` it speaks TLS only."""

    def __init__(
        self, workdir: Path, *, user: tuple[str, str] | None = None, tls: TlsFiles | None = None
    ) -> None:
        self.port = free_port()
        self.url = f"{'mqtts' if tls else 'mqtt'}://127.0.0.1:{self.port}"
        self.config = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        # as its caller's user: started as root it would drop to `mosquitto`, who cannot write the test's dir
        lines = [f"user {getpass.getuser()}", f"listener {self.port} 127.0.0.1", "persistence true",
                 f"persistence_location {workdir}/", f"log_dest file {self.log}"]  # fmt: skip
        if user is None:
            lines.append("allow_anonymous true")
        else:
            if MOSQUITTO_PASSWD is None:
                pytest.skip("mosquitto_passwd is not installed: apt-get install -y mosquitto")
            passwords = workdir / "passwords"
            subprocess.run([MOSQUITTO_PASSWD, "-b", "-c", str(passwords), *user], check=True)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        if tls is not None:
            lines += [f"cafile {tls.ca}", f"certfile {tls.certificate}", f"keyfile {tls.key}"]
        self.config.write_text("\n".join(lines) + "\n")
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


@pytest.fixture
def start_broker(tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    """Starts brokers with Broker's options (user, tls), each in its own folder; stops them at the end."""
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed: apt-get install -y mosquitto (`make test` does it)")
    started: list[Broker] = []

    def start(**options: Any) -> Broker:
        folder = tmp_path / f"broker{len(started)}"
        folder.mkdir()
        server = Broker(folder, **options)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
