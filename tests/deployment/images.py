"""The images of the compose end-to-end test, built the way a site builds them: `docker/Dockerfile` with its
build args. Where no image registry can be reached, the bases are stand-ins from Debian packages
(tests/deployment/standin_bases.sh) and the CPU torch wheel comes from a local package index made with the
caller's own pip (its find-links or index configuration), served on loopback for the build.

Settings (environment): VIGIL_TEST_PYTHON_IMAGE and VIGIL_TEST_REDIS_IMAGE use those bases instead of the
stand-ins (e.g. the official `python:3.11.14-slim-bookworm` and `redis:7.4.7-alpine`); VIGIL_TEST_TORCH_INDEX_URL
uses that index for torch (e.g. https://download.pytorch.org/whl/cpu) instead of the local one.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
STANDIN_SCRIPT = Path(__file__).with_name("standin_bases.sh")
STANDIN_PYTHON = "vigil-standin/python:bookworm"
STANDIN_REDIS = "vigil-standin/redis:bookworm"
IMAGE_TAG = "compose-e2e"  # vigil-vad:<tag>, so that a site's own vigil-vad images are left alone
BUILD_TIMEOUT_S = 1800
LOCAL_INDEX_PORT = 38741


class Unavailable(Exception):
    """What this machine lacks to build or run the images (the test skips with it)."""


@dataclass
class BuiltImage:
    name: str
    python_base: str
    redis_image: str
    size_bytes: int
    build_s: float
    layers_reused: bool  # whether the build took any layer from the engine's cache


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=check)


def require_docker_engine() -> None:
    if shutil.which("docker") is None:
        raise Unavailable("no docker CLI (apt-get install -y docker.io)")
    info = docker("info", "--format", "{{.ServerVersion}}", check=False)
    if info.returncode != 0:
        raise Unavailable(f"no Docker engine answers ({info.stderr.strip()}): start dockerd")


def base_images() -> tuple[str, str]:
    """The Python base and the Redis image: the caller's, else the Debian stand-ins (made once)."""
    python_base, redis_image = (
        os.environ.get("VIGIL_TEST_PYTHON_IMAGE"),
        os.environ.get("VIGIL_TEST_REDIS_IMAGE"),
    )
    if python_base and redis_image:
        return python_base, redis_image
    if os.geteuid() != 0 or shutil.which("debootstrap") is None:
        raise Unavailable(
            "the stand-in base images need root and debootstrap (apt-get install -y debootstrap); or set "
            "VIGIL_TEST_PYTHON_IMAGE and VIGIL_TEST_REDIS_IMAGE to images this engine has"
        )
    made = subprocess.run(
        [str(STANDIN_SCRIPT), STANDIN_PYTHON, STANDIN_REDIS], capture_output=True, text=True, timeout=1200
    )
    if made.returncode != 0:
        raise Unavailable(f"stand-in base images failed: {(made.stdout + made.stderr)[-2000:]}")
    return STANDIN_PYTHON, STANDIN_REDIS


def dockerfile_arg(name: str) -> str:
    found = re.search(rf"^ARG {name}=(\S+)$", DOCKERFILE.read_text(), re.M)
    assert found, f"docker/Dockerfile has no default for {name}"
    return found[1]


def _normalized(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


class QuietFileHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def local_torch_index(workdir: Path) -> Iterator[str]:
    """A PEP 503 index on loopback holding the CPU torch wheel and its dependencies, as the caller's pip finds
    them (pinned by docker/requirements.txt); its URL."""
    torch = f"torch=={dockerfile_arg('TORCH_VERSION')}+cpu"
    wheels = workdir / "wheels"
    downloaded = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(wheels), torch,
         "--constraint", str(ROOT / "docker" / "requirements.txt")],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    if downloaded.returncode != 0:
        raise Unavailable(
            f"pip cannot get {torch} ({downloaded.stderr.strip()[-500:]}): give pip a find-links or index "
            "with the CPU wheel, or set VIGIL_TEST_TORCH_INDEX_URL"
        )
    simple = workdir / "simple"
    for wheel in wheels.glob("*.whl"):
        project = simple / _normalized(wheel.name.split("-")[0])
        project.mkdir(parents=True, exist_ok=True)
        wheel.rename(project / wheel.name)
    handler = functools.partial(QuietFileHandler, directory=str(workdir))
    try:  # the same URL every time: a build arg that changes would miss the layer cache of the torch install
        server = http.server.ThreadingHTTPServer(("127.0.0.1", LOCAL_INDEX_PORT), handler)
    except OSError:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple"
    finally:
        server.shutdown()
        server.server_close()


def build_vigil_image(python_base: str, torch_index_url: str) -> tuple[str, float, bool]:
    """docker build of docker/Dockerfile (host network: pip reaches the registry and a loopback index)."""
    name = f"vigil-vad:{IMAGE_TAG}"
    started = time.monotonic()
    build = subprocess.run(
        ["docker", "build", "--network=host", "-f", str(DOCKERFILE), "-t", name,
         "--build-arg", f"PYTHON_IMAGE={python_base}", "--build-arg", f"TORCH_INDEX_URL={torch_index_url}",
         str(ROOT)],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
    )  # fmt: skip
    assert build.returncode == 0, f"docker build failed:\n{(build.stdout + build.stderr)[-5000:]}"
    reused = "Using cache" in build.stdout or " CACHED" in build.stderr  # the classic builder, BuildKit
    return name, time.monotonic() - started, reused


def build_images(workdir: Path) -> BuiltImage:
    require_docker_engine()
    python_base, redis_image = base_images()
    if index_url := os.environ.get("VIGIL_TEST_TORCH_INDEX_URL"):
        name, build_s, reused = build_vigil_image(python_base, index_url)
    else:
        with local_torch_index(workdir) as local_index:
            name, build_s, reused = build_vigil_image(python_base, local_index)
    size = int(docker("image", "inspect", "--format", "{{.Size}}", name).stdout.strip())
    return BuiltImage(name, python_base, redis_image, size, build_s, reused)
