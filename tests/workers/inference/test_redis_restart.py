"""A Redis restart under load: the inference worker reconnects and resumes; nothing acknowledged is lost."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from models.detector.motion import MotionBaseline
from tests.waiting import wait_for
from tests.workers.inference.test_worker import (
    HEIGHT,
    WIDTH,
    add_camera,
    scored_seqs,
    settings_for_test,
    write_frames,
)
from workers.bus import keys, schemas
from workers.bus.connection import EmbeddedRedis, connect, free_port
from workers.inference.worker import InferenceWorker


def test_inference_resumes_after_redis_restart_and_keeps_alerts(tmp_path: Path) -> None:
    port = free_port()
    server = EmbeddedRedis(tmp_path / "redis", port=port).start()
    client = connect(server.url)
    add_camera(client, "cam1")
    write_frames(client, "cam1", anomalous=range(20, 40), count=60)
    settings = settings_for_test()
    settings.reconnect_max_s = 1.0
    worker = InferenceWorker(settings, server.url, worker_id="w1", detector=MotionBaseline(HEIGHT, WIDTH))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(scored_seqs(client, "cam1")) == 60)
        alerts_before = client.hgetall(keys.ALERTS)
        assert alerts_before

        server.stop()  # SIGTERM: Redis writes its append-only file and exits
        time.sleep(1.0)
        server = EmbeddedRedis(tmp_path / "redis", port=port).start()
        client = connect(server.url)
        assert client.hgetall(keys.ALERTS) == alerts_before

        # More frames after the restart, continuing the camera's sequence.
        rest = [
            schemas.FrameMessage.from_fields(fields)
            for _, fields in connect(server.url).xrange(keys.frames_stream("cam1"), count=1)
        ]
        assert rest, "frames did not survive the restart"
        write_more = 40
        for seq in range(60, 60 + write_more):
            message = rest[0].model_copy(update={"seq": seq, "ts": 1000.0 + seq / 10})
            client.xadd(keys.frames_stream("cam1"), message.to_fields())
        wait_for(lambda: len(scored_seqs(client, "cam1")) == 60 + write_more, timeout_s=30)
        assert scored_seqs(client, "cam1") == list(range(60 + write_more))
    finally:
        worker.stop()
        thread.join(10)
        server.stop()
