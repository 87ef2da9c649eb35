"""A worker killed with SIGKILL mid-stream: its successor gives every frame the score an undisturbed run gives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable

import numpy as np
import redis

from tests.waiting import wait_for
from tests.workers.inference.test_worker import add_camera, frame_message, scene
from workers.bus import keys, schemas
from workers.inference.worker import InferenceWorker

# the worker of the test fixture (motion baseline, short leases), as a process that can be killed
WORKER_SCRIPT = """
import sys
from models.detector.motion import MotionBaseline
from tests.workers.inference.test_worker import HEIGHT, WIDTH, settings_for_test
from workers.inference.worker import InferenceWorker
detector = MotionBaseline(HEIGHT, WIDTH)
InferenceWorker(settings_for_test(), sys.argv[1], worker_id="doomed", detector=detector).run()
"""
FRAMES = 240


def write_range(client: redis.Redis, camera: str, seqs: range) -> None:
    for seq in seqs:
        # the same frames for every camera: a square crossing now and then, so that scores vary
        rng = np.random.default_rng(seq)
        message = frame_message(camera, seq, scene(seq, rng, square=seq % 50 >= 35))
        client.xadd(keys.frames_stream(camera), message.to_fields())


def scores(client: redis.Redis, camera: str) -> dict[int, tuple[float, float, str, int | None]]:
    entries = [schemas.ScoreMessage.from_fields(f) for _, f in client.xrange(keys.scores_stream(camera))]
    return {entry.seq: (entry.score, entry.raw, entry.model, entry.session) for entry in entries}


def test_a_takeover_after_sigkill_scores_every_frame_as_an_undisturbed_run(
    redis_client: redis.Redis, redis_url: str, start_inference: Callable[[str], InferenceWorker]
) -> None:
    add_camera(redis_client, "killed")
    write_range(redis_client, "killed", range(FRAMES // 2))
    env = os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)}
    doomed = subprocess.Popen([sys.executable, "-c", WORKER_SCRIPT, redis_url], env=env)
    try:
        wait_for(lambda: len(scores(redis_client, "killed")) >= FRAMES // 4, 30)
    finally:
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(10)
    write_range(redis_client, "killed", range(FRAMES // 2, FRAMES))
    add_camera(redis_client, "undisturbed")
    write_range(redis_client, "undisturbed", range(FRAMES))
    start_inference("successor")
    wait_for(lambda: len(scores(redis_client, "killed")) == FRAMES, 30)
    wait_for(lambda: len(scores(redis_client, "undisturbed")) == FRAMES, 30)
    assert scores(redis_client, "killed") == scores(redis_client, "undisturbed")
