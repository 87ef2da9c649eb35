"""Starting tests/rtsp_server.py as a child process: it runs on the system Python, whose GStreamer bindings
the project's environment lacks. The worker tests and the live-camera benchmark start their servers here."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"  # GStreamer's Python bindings come with the system's Python
RTSP_SERVER_SCRIPT = Path(__file__).resolve().parent / "rtsp_server.py"
RTSP_PACKAGES = (
    "gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad "
    "gstreamer1.0-tools python3-gi"
)
STOP_TIMEOUT_S = 30.0


def start_rtsp_server(
    port: int,
    mount: str = "/cam",
    files: Sequence[Path] = (),
    once: bool = False,
    address: str = "127.0.0.1",
) -> subprocess.Popen[str]:
    """The server on `address`:`port` serving `mount`, once it listens (it prints "ready"): the files in turn
    (each to one client only with `once`), else a live test pattern. A server that does not start is killed
    and its error raised as a RuntimeError."""
    command = [SYSTEM_PYTHON, str(RTSP_SERVER_SCRIPT), "--port", str(port), "--mount", mount]
    command += ["--address", address]
    command += [arg for file in files for arg in ("--file", str(file))]
    command += ["--once"] if once else []
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    try:
        line = process.stdout.readline()  # "ready", or nothing when it failed
    except OSError:
        line = ""
    if line.strip() != "ready":
        process.kill()
        error = process.communicate(timeout=STOP_TIMEOUT_S)[1].strip().splitlines()
        raise RuntimeError(
            f"the RTSP server for {mount} on port {port} did not start ({error[-1] if error else 'no output'}); "
            f"it needs: apt-get install -y {RTSP_PACKAGES}"
        )
    return process
