"""The whole product as an operator runs it: `vigil up --source clip.mp4` with the embedded Redis.

A generated clip with a synthetic anomaly (a bright square crossing a still walkway) must produce an
alert through the REST API and the WebSocket; killing the inference process mid-stream must be survived
with every frame scored exactly once and no duplicate alert.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import httpx
import psutil
import pytest
from websockets.sync.client import connect as ws_connect

from models.detector.runtime import load_detector
from tests import waiting
from workers.bus import keys, schemas
from workers.bus.connection import connect, free_port
from workers.ingest.demo import write_demo_clip

CLIP_SECONDS = 16
FPS = 10


# the service is polled over HTTP while its processes start and restart: a refused request is "not yet"
wait_for = partial(waiting.wait_for, every_s=0.2, retry_on=(httpx.HTTPError, OSError))


@contextmanager
def running_vigil_up(
    args: list[str], tmp_path: Path, **env_overrides: str
) -> Iterator[tuple[psutil.Process, str]]:
    """`vigil up ARGS` in its own process group with a fresh data dir and API port; stopped (and its log
    printed) at the end."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env |= {"VIGIL_DATA_DIR": str(tmp_path / "data"), "VIGIL_API_PORT": str(port), **env_overrides}
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "up", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield psutil.Process(process.pid), f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        output = process.stdout.read().decode(errors="replace") if process.stdout else ""
        (tmp_path / "vigil-up.log").write_text(output)
        print(output[-5000:])


@pytest.fixture
def vigil_up(tmp_path: Path) -> Iterator[tuple[psutil.Process, str, Path]]:
    clip = write_demo_clip(tmp_path / "walkway.mp4", seconds=CLIP_SECONDS, fps=FPS)
    settings = {"VIGIL_HEARTBEAT_S": "0.5", "VIGIL_INFERENCE__LEASE_TTL_MS": "1500"}
    with running_vigil_up(["--source", str(clip)], tmp_path, **settings) as (up, api):
        yield up, api, clip


def child(up: psutil.Process, command: str) -> psutil.Process | None:
    for proc in up.children(recursive=True):
        try:
            cmdline = proc.cmdline()
        except psutil.Error:
            continue
        if "service.cli" in cmdline and command in cmdline:
            return proc
    return None


def test_alert_reaches_rest_and_websocket_and_inference_kill_is_survived(
    vigil_up: tuple[psutil.Process, str, Path],
) -> None:
    up, api, _clip = vigil_up
    wait_for(lambda: httpx.get(f"{api}/healthz", timeout=2).status_code == 200, 90, "the API")
    inference = wait_for(lambda: child(up, "infer"), 30, "the inference process")
    redis_url = inference.environ()["VIGIL_REDIS_URL"]
    client = connect(redis_url)
    cameras = wait_for(lambda: httpx.get(f"{api}/api/cameras", timeout=2).json(), 30, "the camera")
    camera = cameras[0]["id"] if isinstance(cameras, list) else cameras["items"][0]["id"]

    # Kill the inference worker once it has scored a few frames: its pending frames must be taken over.
    wait_for(lambda: client.xlen(keys.scores_stream(camera)) >= 15, 60, "first scores")
    inference.send_signal(signal.SIGKILL)
    wait_for(lambda: (p := child(up, "infer")) is not None and p.pid != inference.pid, 30, "the restart")

    alerts = wait_for(
        lambda: httpx.get(f"{api}/api/alerts", params={"camera": camera}, timeout=2).json()["items"],
        60,
        "an alert over REST",
    )
    alert_id = alerts[0]["id"]
    assert httpx.get(f"{api}/api/alerts/{alert_id}", timeout=2).json()["camera"] == camera

    with ws_connect(f"{api.replace('http', 'ws')}/ws/alerts?last_id=0", open_timeout=10) as ws:
        first = json.loads(ws.recv(timeout=10))
    assert first["type"] == "new" and first["alert"]["id"] == alert_id

    # The clip ends: every frame scored exactly once, one `new` event per alert.
    wait_for(
        lambda: json.loads(client.hget(keys.CAMERA_STATUS, camera) or b"{}").get("state") == "finished",
        CLIP_SECONDS + 30,
        "the end of the clip",
    )
    frames = client.xlen(keys.frames_stream(camera))
    wait_for(lambda: client.xlen(keys.scores_stream(camera)) >= frames, 30, "all frames scored")
    seqs = [int(fields[b"seq"]) for _, fields in client.xrange(keys.scores_stream(camera))]
    assert sorted(seqs) == list(range(frames)), "a frame was skipped or scored twice"
    events = [schemas.AlertEvent.from_fields(f) for _, f in client.xrange(keys.ALERT_EVENTS)]
    new_counts = Counter(e.alert_id for e in events if e.type == "new")
    assert new_counts and max(new_counts.values()) == 1, f"duplicate alert events: {new_counts}"


def test_a_model_is_fitted_to_every_camera_of_a_running_site(tmp_path: Path) -> None:
    """`vigil up` with two cameras of different scenes and sizes; `vigil train --all-cameras`, run beside
    it as an operator would, finds its embedded Redis and fits one model to both cameras' buffered frames,
    at the smaller camera's flow."""
    gate = write_demo_clip(tmp_path / "gate.mp4", seconds=12, fps=FPS)
    lawn = write_demo_clip(tmp_path / "lawn.mp4", seconds=12, fps=FPS, size=(238, 158), seed=1)
    settings = {"VIGIL_RETRAIN__ENABLED": "false"}
    with running_vigil_up(["--source", str(gate), "--source", str(lawn)], tmp_path, **settings):
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
        env |= {"VIGIL_DATA_DIR": str(tmp_path / "data")}
        model = tmp_path / "site.onnx"
        command = [sys.executable, "-m", "service.cli", "train", "--all-cameras", "--out", str(model)]

        # until the site is up, its cameras added and 50 frames of each buffered, the command says why not
        not_yet = ("needs the shared Redis", "no enabled camera", "analysis frames buffered")

        def fitted() -> bool:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0 or any(why in done.stderr for why in not_yet), done.stderr
            return done.returncode == 0

        waiting.wait_for(fitted, timeout_s=120, what="a fit to both cameras", every_s=2.0)
    metadata = load_detector(model, "cpu").info.metadata
    assert metadata["training"]["dataset"] == "camera:gate,lawn"
    assert metadata["detector"]["flow"]["finest_scale"] == 1  # lawn's 238x158 are fewer than 360x240
