"""An alert's clip.mp4 and snapshot.jpg from frames stored as the workers store them, in a real Redis."""

from __future__ import annotations

import io

import av
import cv2
import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

from workers.bus import keys, schemas
from workers.store.error_maps import encode_error_map

START = 1_700_000_000.0
HEIGHT, WIDTH = 48, 61  # an odd width: H.264 frames are even-sized


def level(k: int) -> int:
    """Frame k (at START + k / 10 s) is a uniform gray of this level: which frame a picture shows."""
    return 100 + k


@pytest.fixture
def alert(redis_client: redis.Redis) -> schemas.Alert:
    """A closed alert of 5 s on camera `gate` (frames 100 to 150, peak 120), 10 fps analysis frames from
    5 s before it to 2 s after it, and an error map kept for its peak frame."""
    for k in range(-50, 71):
        frame = schemas.FrameMessage(
            camera="gate",
            seq=100 + k,
            ts=START + k / 10,
            session=0,
            width=WIDTH,
            height=HEIGHT,
            gray=np.full((HEIGHT, WIDTH), level(k), np.uint8).tobytes(),
        )
        redis_client.xadd(keys.frames_stream("gate"), frame.to_fields(), id=f"{int(frame.ts * 1000) + 40}-0")
    error_map = np.zeros((HEIGHT // 2, WIDTH // 2), np.float32)
    error_map[5:15, 5:15] = 3.0
    redis_client.set(keys.error_map_key("gate", 120), encode_error_map(error_map))
    alert = schemas.Alert(
        id="gate-100",
        camera="gate",
        state="closed",
        start_ts=START,
        end_ts=START + 5,
        start_seq=100,
        end_seq=150,
        last_seq=150,
        peak_score=0.9,
        peak_seq=120,
        peak_ts=START + 2,
        model="v1",
    )
    redis_client.hset(keys.ALERTS, alert.id, alert.model_dump_json())
    return alert


def decode(mp4: bytes) -> tuple[list[np.ndarray], str, float]:
    """The decoded BGR frames, the codec name and the frame rate of an MP4."""
    with av.open(io.BytesIO(mp4)) as container:
        stream = container.streams.video[0]
        images = [frame.to_ndarray(format="bgr24") for frame in container.decode(stream)]
        return images, stream.codec_context.name, float(stream.average_rate or 0)


def test_clip_runs_from_before_the_alert_to_its_end(api: TestClient, alert: schemas.Alert) -> None:
    response = api.get(f"/api/alerts/{alert.id}/clip.mp4")
    assert response.status_code == 200 and response.headers["content-type"] == "video/mp4"
    images, codec, fps = decode(response.content)
    assert len(images) == 81  # 3 s before the start to the end, at 10 fps
    assert codec in {"h264", "libopenh264", "mpeg4"} and round(fps) == 10
    assert images[0].shape == (HEIGHT, WIDTH + 1, 3)  # the last column repeated
    assert abs(images[0].mean() - level(-30)) < 4 and abs(images[-1].mean() - level(50)) < 4


def test_clip_with_the_heat_map_overlay(api: TestClient, alert: schemas.Alert) -> None:
    response = api.get(f"/api/alerts/{alert.id}/clip.mp4", params={"heatmap": "true"})
    images, _, _ = decode(response.content)
    assert len(images) == 81 and images[0].shape[1] == 480  # drawn as the heat map image is
    colour = [int(np.ptp(image[: image.shape[0] - 60].astype(int), axis=2).max()) for image in images]
    assert colour[50] > 100 and max(colour[:45] + colour[55:]) < 40  # only the peak frame has a kept map


def test_snapshot_is_the_peak_frame(api: TestClient, alert: schemas.Alert) -> None:
    response = api.get(f"/api/alerts/{alert.id}/snapshot.jpg")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    image = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert image.shape == (HEIGHT, WIDTH) and abs(image.mean() - level(20)) < 3


def test_unknown_alert_and_frames_no_longer_buffered(
    api: TestClient, alert: schemas.Alert, redis_client: redis.Redis
) -> None:
    for path in ("clip.mp4", "snapshot.jpg"):
        response = api.get(f"/api/alerts/nope/{path}")
        assert response.status_code == 404 and "no alert with id 'nope'" in response.text
    redis_client.delete(keys.frames_stream("gate"))
    response = api.get(f"/api/alerts/{alert.id}/clip.mp4")
    assert response.status_code == 404 and "no longer buffered" in response.text
