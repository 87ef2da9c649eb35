"""`docker compose up` end to end: the images built from docker/Dockerfile, the site of docker-compose.yml with
three RTSP cameras (tests/rtsp_server.py on the host, reached through the compose network's gateway), an
alert read from outside over REST and WebSocket, inference scaled to three, the retraining worker's first
model served by every inference container, Redis restarted (its AOF keeps alerts, labels and model versions)
and an inference container killed, with every frame scored exactly once throughout.

The tests run in file order against one stack (module scope). Marker `compose`: not part of `make test`;
`make test-compose` runs it (root, a Docker engine, debootstrap where no registry is reachable: see
tests/deployment/images.py) and, with VIGIL_COMPOSE_REPORT set, writes its figures there as JSON.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml
from websockets.sync.client import connect as ws_connect

from tests import waiting
from tests.deployment.images import BuiltImage, Unavailable, build_images, docker
from tests.test_deployment import COMPOSE, compose_tool
from tests.workers.conftest import RtspServer, gstreamer_rtsp  # noqa: F401  (a fixture)
from workers.bus import keys, schemas
from workers.bus.connection import connect, free_port
from workers.ingest.clips import write_clip
from workers.ingest.demo import demo_frames

# The first test's setup builds the images: minutes on a small machine.
pytestmark = [pytest.mark.compose, pytest.mark.timeout(2400)]

PROJECT = "vigil-e2e"
CAMERAS = ("gate-1", "gate-2", "gate-3")
CAMERA_FPS = 5
SEGMENT_S = 20  # the demo scene: a bright square crosses it 8 s into every segment
SEGMENTS = 45  # 15 minutes of footage: longer than the whole test
TOKEN = "compose-e2e-operator-token"
# Fast heartbeats and leases, small frames (two shared CPU cores run everything), a cold start once about
# a minute of frames is scored, and no further cycles while the test runs.
TEST_SETTINGS = {
    "VIGIL_HEARTBEAT_S": "1",
    "VIGIL_INFERENCE__LEASE_TTL_MS": "3000",
    "VIGIL_ANALYSIS__WIDTH": "160",
    "VIGIL_ANALYSIS__HEIGHT": "120",
    "VIGIL_DETECTOR__BANK_SIZE": "64",
    "VIGIL_RETRAIN__INTERVAL_S": "5",
    "VIGIL_RETRAIN__COLDSTART_FRAMES": "900",
    "VIGIL_RETRAIN__COLDSTART_MIN_FRAMES": "100",
    "VIGIL_RETRAIN__CYCLE_FRAMES": "1000000",
}
SERVICES = ("api", "ingest", "inference", "retrain")
FIGURES: dict[str, Any] = {}


# the site is polled over HTTP and Redis while its containers start and restart: a refusal is "not yet"
wait_for = partial(waiting.wait_for, every_s=0.5, retry_on=(httpx.HTTPError, OSError, redis.RedisError))


@dataclass
class Site:
    """The running stack, from outside: compose commands, the published API and Redis."""

    compose_args: list[str]
    env: dict[str, str]
    api: str
    redis: redis.Redis
    image: BuiltImage
    logs: Path
    marks: dict[str, dict[str, int]] = field(default_factory=dict)

    def compose(self, *args: str, timeout: float = 300) -> str:
        result = subprocess.run(
            [*self.compose_args, *args], capture_output=True, text=True, timeout=timeout, env=self.env
        )
        assert result.returncode == 0, f"compose {' '.join(args)}:\n{result.stdout}{result.stderr}"
        return result.stdout

    def containers(self, service: str) -> list[str]:
        return self.compose("ps", "-q", service).split()

    def ready(self) -> dict[str, Any] | None:
        body = httpx.get(f"{self.api}/readyz", timeout=3).json()
        return body if body["ready"] else None

    def live_inference(self) -> list[dict[str, Any]]:
        beats = [json.loads(raw) for raw in self.redis.hgetall(keys.WORKERS).values()]
        fresh = time.time() - 5
        return [b for b in beats if b["role"] == "inference" and b["ts"] > fresh]

    def newest_seqs(self) -> dict[str, int]:
        return {
            camera: int(self.redis.xrevrange(keys.frames_stream(camera), count=1)[0][1][b"seq"])
            for camera in CAMERAS
        }

    def assert_scored_once_since(self, mark: dict[str, int], what: str) -> dict[str, int]:
        """Every frame stored since `mark` (per camera) is scored exactly once: none lost, none twice."""
        until = self.newest_seqs()

        def caught_up() -> bool:
            return all(max(self.scored(camera), default=-1) >= until[camera] for camera in CAMERAS)

        wait_for(caught_up, 120, f"inference to catch up ({what})")
        counts = {}
        for camera in CAMERAS:
            frames = {
                int(fields[b"seq"])
                for _, fields in self.redis.xrange(keys.frames_stream(camera))
                if mark[camera] <= int(fields[b"seq"]) <= until[camera]
            }
            scored = [seq for seq in self.scored(camera) if mark[camera] <= seq <= until[camera]]
            assert frames == set(range(mark[camera], until[camera] + 1)), f"{camera}: ingest skipped frames"
            assert len(scored) == len(set(scored)), f"{camera}: frames scored twice ({what})"
            assert set(scored) == frames, f"{camera}: frames never scored ({what})"
            counts[camera] = len(scored)
        return counts

    def scored(self, camera: str) -> list[int]:
        return [int(fields[b"seq"]) for _, fields in self.redis.xrange(keys.scores_stream(camera))]


def demo_footage(path: Path) -> Path:
    """SEGMENTS repeats of the demo scene (an anomaly in each), as one H.264 MP4 the RTSP server plays."""
    segment = demo_frames(SEGMENT_S, fps=10, size=(320, 240))
    write_clip(path, (frame for _ in range(SEGMENTS) for frame in segment), fps=10)
    return path


def compose_override(path: Path, redis_port: int) -> Path:
    """Test-only additions: Redis published on loopback (to check the streams) and the fast settings."""
    services: dict[str, Any] = {"redis": {"ports": [f"127.0.0.1:{redis_port}:6379"]}}
    services |= {name: {"environment": TEST_SETTINGS} for name in SERVICES}
    path.write_text(yaml.safe_dump({"services": services}))
    return path


def compose_env(image: BuiltImage, workdir: Path, site_file: Path, api_port: int) -> dict[str, str]:
    """What compose reads from the environment: the built images, the token, the site file, the API port."""
    (workdir / "secrets").mkdir()
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        **{k: v for k, v in os.environ.items() if k.startswith("DOCKER_")},
        "VIGIL_VERSION": image.name.split(":")[1],
        "VIGIL_REDIS_IMAGE": image.redis_image,
        "VIGIL_OPERATOR_TOKEN": TOKEN,
        "VIGIL_API_PUBLISH": f"127.0.0.1:{api_port}",
        "VIGIL_SITE_FILE": str(site_file),
        "VIGIL_SECRETS_DIR": str(workdir / "secrets"),
    }


def network_gateway() -> str:
    inspect = docker(
        "network", "inspect", "--format", "{{(index .IPAM.Config 0).Gateway}}", f"{PROJECT}_default"
    )
    return inspect.stdout.strip()


def save_logs(site: Site) -> None:
    result = subprocess.run(
        [*site.compose_args, "logs", "--no-color", "--timestamps"],
        capture_output=True,
        text=True,
        timeout=120,
        env=site.env,
    )
    site.logs.write_text(result.stdout + result.stderr)
    print(f"compose logs: {site.logs}")


def write_report(image: BuiltImage) -> None:
    target = os.environ.get("VIGIL_COMPOSE_REPORT")
    if not target:
        return
    report = {
        "name": "compose end to end (tests/deployment/test_compose_end_to_end.py)",
        "command": "make test-compose",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "platform": platform.platform()},
        "docker": docker("version", "--format", "{{.Server.Version}}").stdout.strip(),
        "images": {
            "vigil": image.name,
            "python_base": image.python_base,
            "python_base_bytes": int(
                docker("image", "inspect", "--format", "{{.Size}}", image.python_base).stdout
            ),
            "redis": image.redis_image,
            "vigil_bytes": image.size_bytes,
            "build_s": round(image.build_s, 1),
            "build_reused_cached_layers": image.layers_reused,
        },
        "site": {"cameras": len(CAMERAS), "fps": CAMERA_FPS, "settings": TEST_SETTINGS},
        **FIGURES,
    }
    Path(target).write_text(json.dumps(report, indent=2) + "\n")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, gstreamer_rtsp: None) -> Iterator[Site]:  # noqa: F811
    tool = compose_tool()
    if tool is None:
        pytest.skip("docker-compose not installed (apt-get install -y docker-compose)")
    workdir = tmp_path_factory.mktemp("compose")
    try:
        image = build_images(workdir / "build")
    except Unavailable as exc:
        pytest.skip(f"cannot build the images here: {exc}")
    clip = demo_footage(workdir / "walkway.mp4")
    redis_port, api_port = free_port(), free_port()
    site_file = workdir / "site.yml"
    env = compose_env(image, workdir, site_file, api_port)
    env_file = workdir / "empty.env"  # ignore any .env of the checkout: the test sets what it needs
    env_file.write_text("")
    override = compose_override(workdir / "docker-compose.test.yml", redis_port)
    compose_args = [*tool, "--env-file", str(env_file), "--project-directory", str(COMPOSE.parent)]
    compose_args += ["-p", PROJECT, "-f", str(COMPOSE), "-f", str(override)]
    subprocess.run(
        [*compose_args, "down", "-v", "--remove-orphans"], env=env, capture_output=True, timeout=300
    )
    site = Site(compose_args, env, f"http://127.0.0.1:{api_port}", connect(f"redis://127.0.0.1:{redis_port}/0"),
                image, workdir / "compose.log")  # fmt: skip
    camera: RtspServer | None = None
    try:
        started = time.monotonic()
        site.compose("up", "-d", "redis")
        # The cameras are on the host, reached through the compose network's gateway (the host's own address
        # on that network): the RTSP server listens there once the network exists.
        camera = RtspServer(file=clip, address=network_gateway()).start()
        cameras = [
            {"id": cam, "source": f"rtsp://{camera.address}:{camera.port}{camera.mount}", "fps": CAMERA_FPS}
            for cam in CAMERAS
        ]
        site_file.write_text(yaml.safe_dump({"cameras": cameras}))
        site.compose("up", "-d")
        wait_for(site.ready, 300, "/readyz ready")
        FIGURES["up_to_ready_s"] = round(time.monotonic() - started, 1)
        wait_for(lambda: all(site.scored(cam) for cam in CAMERAS), 120, "the first scores of every camera")
        FIGURES["up_to_first_scores_s"] = round(time.monotonic() - started, 1)
        yield site
    finally:
        save_logs(site)
        site.compose("down", "-v", "--remove-orphans")
        if camera is not None:
            camera.stop()
        site.redis.close()
        write_report(image)


def test_the_site_comes_up_ready_from_a_small_cpu_image(site: Site) -> None:
    readiness = site.ready()
    assert readiness and readiness["live_workers"]["inference"] == 1, readiness
    assert not readiness["cameras_down"], readiness
    statuses = httpx.get(f"{site.api}/api/cameras", timeout=5).json()
    listed = statuses if isinstance(statuses, list) else statuses["items"]
    assert {camera["id"] for camera in listed} == set(CAMERAS)
    FIGURES["image_mb"] = round(site.image.size_bytes / 1e6)
    assert site.image.size_bytes < 1.5e9, f"the CPU image is {site.image.size_bytes / 1e9:.2f} GB"


def test_an_alert_reaches_rest_and_websocket(site: Site) -> None:
    started = time.monotonic()
    alerts = wait_for(
        lambda: httpx.get(f"{site.api}/api/alerts", timeout=5).json()["items"], 120, "an alert over REST"
    )
    FIGURES["first_alert_s_after_ready"] = round(time.monotonic() - started, 1)
    assert {alert["camera"] for alert in alerts} <= set(CAMERAS)
    ws_url = site.api.replace("http://", "ws://") + "/ws/alerts?last_id=0"
    with ws_connect(ws_url, open_timeout=10) as ws:
        first = json.loads(ws.recv(timeout=15))
    assert first["type"] == "new"
    one = httpx.get(f"{site.api}/api/alerts/{first['alert']['id']}", timeout=5)
    assert one.status_code == 200 and one.json()["camera"] == first["alert"]["camera"]


def test_three_inference_containers_share_the_cameras_and_score_every_frame_once(site: Site) -> None:
    site.marks["scale"] = site.newest_seqs()
    site.compose("up", "-d", "--no-recreate", "--scale", "inference=3")
    wait_for(lambda: len(site.live_inference()) == 3, 120, "three live inference workers")
    wait_for(
        lambda: sum(1 for beat in site.live_inference() if beat["info"].get("cameras")) >= 2,
        90,
        "the cameras spread over the inference workers",
    )
    time.sleep(10)
    counts = site.assert_scored_once_since(site.marks["scale"], "scale to 3")
    FIGURES["scale"] = {
        "inference_containers": len(site.containers("inference")),
        "cameras_per_worker": sorted(len(beat["info"].get("cameras", [])) for beat in site.live_inference()),
        "frames_checked": counts,
    }


def test_the_retrained_model_reaches_every_inference_container(site: Site) -> None:
    mark = site.newest_seqs()
    started = time.monotonic()
    current = wait_for(
        lambda: httpx.get(f"{site.api}/api/models", timeout=10).json()["current"],
        600,
        "the retraining worker's first model",
        every_s=1,
    )
    published, published_wall = time.monotonic(), time.time()
    wait_for(
        lambda: {beat["info"].get("model") for beat in site.live_inference()} == {current},
        120,
        f"every inference worker serving {current}",
    )
    workers = site.live_inference()
    assert len(workers) == 3

    def scored_by_new_model() -> bool:
        return all(
            schemas.ScoreMessage.from_fields(
                site.redis.xrevrange(keys.scores_stream(cam), count=1)[0][1]
            ).model
            == current
            for cam in CAMERAS
        )

    wait_for(scored_by_new_model, 60, "scores from the new model on every camera")
    served = time.monotonic()
    # Swapped in running workers (started before the model was published), with no frame lost or doubled.
    counts = site.assert_scored_once_since(mark, "the model swap")
    FIGURES["retrain"] = {
        "version": current,
        "waited_for_cold_start_s": round(published - started, 1),
        "publish_to_served_everywhere_s": round(served - published, 1),
        "hot_swapped_in_running_workers": all(beat["started_ts"] < published_wall for beat in workers),
        "frames_checked": counts,
    }


def test_alerts_labels_and_model_versions_survive_a_redis_restart(site: Site) -> None:
    alerts = httpx.get(f"{site.api}/api/alerts", params={"limit": 100}, timeout=5).json()["items"]
    assert alerts
    label = httpx.post(
        f"{site.api}/api/feedback",
        json={"alert_id": alerts[-1]["id"], "label": "abnormal"},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert label.status_code == 201, label.text
    models = httpx.get(f"{site.api}/api/models", timeout=10).json()
    time.sleep(1.5)  # appendfsync everysec
    started = time.monotonic()
    site.compose("restart", "redis")
    wait_for(site.ready, 120, "/readyz ready after the Redis restart")
    FIGURES["redis_restart_to_ready_s"] = round(time.monotonic() - started, 1)
    after = httpx.get(f"{site.api}/api/alerts", params={"limit": 100}, timeout=5).json()["items"]
    assert {a["id"] for a in alerts} <= {a["id"] for a in after}
    kept = httpx.get(f"{site.api}/api/feedback/{label.json()['id']}", timeout=5)
    assert kept.status_code == 200 and kept.json()["label"] == "abnormal"
    models_after = httpx.get(f"{site.api}/api/models", timeout=10).json()
    assert models_after["current"] == models["current"]
    assert {v["version"] for v in models["versions"]} <= {v["version"] for v in models_after["versions"]}
    # Scoring goes on after the restart: frames stored from now on are all scored once.
    site.marks["redis"] = wait_for(site.newest_seqs, 60, "frames after the Redis restart")
    time.sleep(10)
    site.assert_scored_once_since(site.marks["redis"], "after the Redis restart")


def test_a_killed_inference_container_comes_back_and_no_frame_is_lost(site: Site) -> None:
    mark = site.newest_seqs()
    crashed, stopped = site.containers("inference")[:2]
    # A crash (the kernel's OOM killer, a segfault): SIGKILL to the container's main process. The restart
    # policy brings the container back. `docker kill` is an operator's stop instead: the engine does not
    # restart it, and the other replicas take its cameras over until `up` starts it again.
    pid = int(docker("inspect", "--format", "{{.State.Pid}}", crashed).stdout)
    assert pid > 1
    os.kill(pid, signal.SIGKILL)
    docker("kill", stopped)
    restarts = wait_for(
        lambda: int(docker("inspect", "--format", "{{.RestartCount}}", crashed).stdout) or None,
        60,
        "the crashed inference container to restart",
    )
    assert docker("inspect", "--format", "{{.State.Running}}", stopped).stdout.strip() == "false"
    time.sleep(10)
    counts = site.assert_scored_once_since(mark, "an inference container crashed and another killed")
    site.compose("up", "-d", "--no-recreate", "--scale", "inference=3")
    wait_for(lambda: len(site.live_inference()) == 3, 120, "three live inference workers again")
    counts_after = site.assert_scored_once_since(mark, "the killed container started again")
    FIGURES["inference_kill"] = {
        "restart_count": restarts,
        "frames_checked": counts_after,
        "frames_checked_while_down": counts,
    }
