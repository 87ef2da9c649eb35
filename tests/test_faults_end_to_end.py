"""Processes killed with SIGKILL under `vigil up`: the supervisor restarts them and the service resumes.

Killing the ingest worker must not repeat or skip a frame number (seq continues from the stream) and every
frame must still be scored exactly once; killing the API must bring it back on the same port.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from tests.test_end_to_end import child, running_vigil_up, wait_for
from workers.bus import keys, schemas
from workers.bus.connection import connect
from workers.ingest.demo import write_demo_clip

pytestmark = pytest.mark.timeout(150)

RESUME_WITHIN_S = 5.0  # the target: a killed part serves again within 5 s of its restart


@pytest.fixture
def vigil_up_looping(tmp_path: Path) -> Iterator[tuple[psutil.Process, str]]:
    clip = write_demo_clip(tmp_path / "walkway.mp4", seconds=6, fps=10)
    site = tmp_path / "site.yml"
    site.write_text(yaml.safe_dump({"cameras": [{"id": "gate", "source": str(clip), "loop": True}]}))
    with running_vigil_up(["--site", str(site)], tmp_path, VIGIL_HEARTBEAT_S="0.5") as running:
        yield running


def restarted(up: psutil.Process, command: str, old_pid: int) -> psutil.Process | None:
    current = child(up, command)
    return current if current is not None and current.pid != old_pid else None


def test_killed_ingest_and_api_are_restarted_and_resume(vigil_up_looping: tuple[psutil.Process, str]) -> None:
    up, api = vigil_up_looping
    wait_for(lambda: httpx.get(f"{api}/healthz", timeout=2).status_code == 200, 90, "the API")
    ingest = wait_for(lambda: child(up, "ingest"), 30, "the ingest process")
    client = connect(ingest.environ()["VIGIL_REDIS_URL"])
    frames = keys.frames_stream("gate")
    wait_for(lambda: client.xlen(frames) >= 20, 30, "first frames")

    ingest.send_signal(signal.SIGKILL)
    killed_at = client.xlen(frames)
    new_ingest = wait_for(lambda: restarted(up, "ingest", ingest.pid), 15, "the ingest restart")
    started = new_ingest.create_time()
    wait_for(lambda: client.xlen(frames) > killed_at, 15, "frames from the new ingest process")
    first_new = time.time()
    assert first_new - started < RESUME_WITHIN_S, f"first frame {first_new - started:.1f} s after the restart"
    wait_for(lambda: client.xlen(frames) >= killed_at + 20, 15, "streaming after the restart")
    status = json.loads(client.hget(keys.CAMERA_STATUS, "gate"))
    assert status["state"] == "streaming"

    stored = [schemas.FrameMessage.from_fields(f) for _, f in client.xrange(frames)]
    seqs = [message.seq for message in stored]
    assert seqs == list(range(len(seqs))), "frame numbers repeat or skip across the kill"
    assert stored[-1].session > stored[killed_at - 1].session, "the restart starts a new frame history"

    def all_scored() -> bool:
        return {int(f[b"seq"]) for _, f in client.xrange(keys.scores_stream("gate"))} >= set(seqs)

    wait_for(all_scored, 30, "every frame scored")
    scored = [int(f[b"seq"]) for _, f in client.xrange(keys.scores_stream("gate"))]
    assert len(scored) == len(set(scored)), "a frame was scored twice"

    api_process = wait_for(lambda: child(up, "api"), 10, "the API process")
    api_process.send_signal(signal.SIGKILL)
    new_api = wait_for(lambda: restarted(up, "api", api_process.pid), 15, "the API restart")
    wait_for(lambda: httpx.get(f"{api}/healthz", timeout=1).status_code == 200, 15, "the API back")
    assert time.time() - new_api.create_time() < RESUME_WITHIN_S
    assert httpx.get(f"{api}/api/cameras/gate", timeout=5).json()["status"]["state"] == "streaming"
