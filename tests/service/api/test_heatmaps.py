"""Heat map rendering (pure functions) and the heat map and score endpoints over a real Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator

import cv2
import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

from service.api import rendering
from service.api.app import create_app
from tests.service.conftest import AlertWriter
from workers.bus import keys, schemas
from workers.config import Settings
from workers.store.error_maps import encode_error_map

HEIGHT, WIDTH = 64, 96  # analysis frame size of the test camera


# ---------------------------------------------------------------- rendering
def hot_spot_map(height: int = 32, width: int = 48) -> np.ndarray:
    error = np.zeros((height, width), dtype=np.float32)
    error[8:16, 24:36] = 2.0  # right half, upper part
    return error


def test_overlay_colours_only_where_the_error_is_meaningful() -> None:
    base = np.full((HEIGHT * 8, WIDTH * 8, 3), 100, dtype=np.uint8)
    image = rendering.render_overlay(base, hot_spot_map(), label="pixel error")
    picture = image[: base.shape[0]]
    assert image.shape == (base.shape[0] + rendering.SCALE_BAR_HEIGHT, base.shape[1], 3)
    # far from the hot spot the image is untouched; on it, the top of the colour map (red in JET) shows
    assert (picture[-20:, :100] == 100).all()
    blue, green, red = picture[base.shape[0] * 12 // 32, base.shape[1] * 30 // 48].astype(int)
    assert red > 100 + 10 and blue < 100 - 40 and green < 100 - 40


def test_a_map_of_zeros_leaves_the_image_as_it_was() -> None:
    base = np.random.default_rng(0).integers(0, 255, (200, 480, 3), dtype=np.uint8)
    image = rendering.render_overlay(base, np.zeros((10, 10), dtype=np.float32))
    assert np.array_equal(image[:200], base)


def test_small_frames_are_upscaled_and_the_scale_bar_spans_the_colour_map() -> None:
    gray = np.full((HEIGHT, WIDTH), 50, dtype=np.uint8)
    image = rendering.render_overlay(rendering.gray_to_bgr(gray), hot_spot_map(), top=4.0)
    assert image.shape[1] == rendering.MIN_WIDTH
    assert image.shape[0] == round(HEIGHT * rendering.MIN_WIDTH / WIDTH) + rendering.SCALE_BAR_HEIGHT
    bar_row = image[-rendering.SCALE_BAR_HEIGHT + 12]
    low, high = bar_row[15].astype(int), bar_row[-15].astype(int)
    assert low[0] > low[2] and high[2] > high[0]  # blue at 0, red at the top


def test_overlay_refuses_arrays_of_the_wrong_shape() -> None:
    with pytest.raises(ValueError, match="BGR"):
        rendering.render_overlay(np.zeros((10, 10), dtype=np.uint8), hot_spot_map())
    with pytest.raises(ValueError, match="2-D"):
        rendering.render_overlay(np.zeros((10, 10, 3), dtype=np.uint8), np.zeros((2, 2, 2)))


def test_sum_maps_resizes_maps_of_another_size() -> None:
    small = np.ones((4, 6), dtype=np.float32)
    large = np.ones((8, 12), dtype=np.float32)
    total = rendering.sum_maps([small, large])
    assert total.shape == (8, 12) and np.allclose(total, 2.0)
    with pytest.raises(ValueError):
        rendering.sum_maps([])


def test_png_and_jpeg_round_trip_and_bad_bytes_are_refused() -> None:
    image = np.random.default_rng(1).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    assert np.array_equal(rendering.decode_jpeg(rendering.encode_png(image)), image)
    with pytest.raises(ValueError, match="not a decodable image"):
        rendering.decode_jpeg(b"not an image")


# ---------------------------------------------------------------- endpoints
@pytest.fixture
def client(redis_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(redis_url=redis_url))) as test_client:
        yield test_client


def add_camera(client: redis.Redis, camera: str = "cam1") -> None:
    config = schemas.CameraConfig(
        id=camera, source="rtsp://user:pw@10.0.0.5/live", width=WIDTH, height=HEIGHT
    )
    client.hset(keys.CAMERAS, camera, config.model_dump_json())


def jpeg(width: int, height: int, value: int = 120) -> bytes:
    ok, data = cv2.imencode(".jpg", np.full((height, width, 3), value, dtype=np.uint8))
    assert ok
    return data.tobytes()


def write_alert(client: redis.Redis, camera: str, peak_seq: int, peak_ts: float) -> schemas.Alert:
    alert = schemas.Alert(
        id=f"{camera}-{peak_seq - 5}-{int(peak_ts * 1000)}",
        camera=camera,
        state="open",
        start_ts=peak_ts - 0.5,
        start_seq=peak_seq - 5,
        last_seq=peak_seq,
        peak_score=0.9,
        peak_seq=peak_seq,
        peak_ts=peak_ts,
        model="motion-baseline",
    )
    client.hset(keys.ALERTS, alert.id, alert.model_dump_json())
    client.zadd(keys.ALERTS_BY_TIME, {alert.id: int(alert.start_ts * 1000)})
    return alert


def write_frame(client: redis.Redis, camera: str, seq: int, ts: float) -> None:
    frame = schemas.FrameMessage(
        camera=camera,
        seq=seq,
        ts=ts,
        session=0,
        width=WIDTH,
        height=HEIGHT,
        gray=np.full((HEIGHT, WIDTH), 70, dtype=np.uint8).tobytes(),
    )
    client.xadd(keys.frames_stream(camera), frame.to_fields())


def decode_png(response_content: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(response_content, dtype=np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def test_alert_heatmap_uses_the_display_image_of_the_peak_frame(
    client: TestClient, redis_client: redis.Redis
) -> None:
    add_camera(redis_client)
    now = time.time()
    for seq, value in ((10, 30), (20, 200)):  # the peak frame's display image is the bright one
        display = schemas.DisplayMessage(
            camera="cam1", seq=seq, ts=now - 2 + seq / 10, jpeg=jpeg(640, 480, value)
        )
        redis_client.xadd(keys.display_stream("cam1"), display.to_fields())
    alert = write_alert(redis_client, "cam1", peak_seq=20, peak_ts=now)
    redis_client.set(keys.error_map_key("cam1", 20), encode_error_map(np.pad(hot_spot_map(), 16)))
    response = client.get(f"/api/alerts/{alert.id}/heatmap.png")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    image = decode_png(response.content)
    assert image.shape == (480 + rendering.SCALE_BAR_HEIGHT, 640, 3)
    assert abs(int(image[470, 10].mean()) - 200) < 8  # uncoloured corner: the bright display image


def test_alert_heatmap_falls_back_to_the_analysis_frame_upscaled(
    client: TestClient, redis_client: redis.Redis
) -> None:
    add_camera(redis_client)
    now = time.time()
    for seq in range(5):
        write_frame(redis_client, "cam1", seq, now + seq / 10)
    alert = write_alert(redis_client, "cam1", peak_seq=3, peak_ts=now + 0.3)
    redis_client.set(keys.error_map_key("cam1", 3), encode_error_map(np.pad(hot_spot_map(), 16)))
    image = decode_png(client.get(f"/api/alerts/{alert.id}/heatmap.png").content)
    assert image.shape[1] == rendering.MIN_WIDTH
    assert abs(int(image[5, 5].mean()) - 70) < 4


def test_alert_heatmap_without_any_image_left_is_drawn_on_a_neutral_background(
    client: TestClient, redis_client: redis.Redis
) -> None:
    add_camera(redis_client)
    alert = write_alert(redis_client, "cam1", peak_seq=7, peak_ts=time.time() - 3600)
    redis_client.set(keys.error_map_key("cam1", 7), encode_error_map(np.pad(hot_spot_map(), 16)))
    image = decode_png(client.get(f"/api/alerts/{alert.id}/heatmap.png").content)
    assert image.shape[1] == rendering.MIN_WIDTH
    assert (image[2, 2] == rendering.NEUTRAL_GRAY).all()


def test_alert_heatmap_of_an_unknown_alert_or_an_expired_map_is_404(
    client: TestClient, redis_client: redis.Redis
) -> None:
    response = client.get("/api/alerts/nope/heatmap.png")
    assert response.status_code == 404 and response.json()["detail"] == "no alert with id 'nope'"
    alert = write_alert(redis_client, "cam1", peak_seq=9, peak_ts=time.time())
    response = client.get(f"/api/alerts/{alert.id}/heatmap.png")
    assert response.status_code == 404
    assert "no longer kept" in response.json()["detail"] and "frame 9" in response.json()["detail"]


def test_camera_heatmap_sums_the_window_over_the_latest_snapshot(
    client: TestClient, redis_client: redis.Redis
) -> None:
    add_camera(redis_client)
    redis_client.set(keys.snapshot_key("cam1"), jpeg(480, 320))
    minute = int(time.time() // 60)
    redis_client.set(keys.heat_bucket_key("cam1", minute), encode_error_map(np.pad(hot_spot_map(), 16)))
    redis_client.set(keys.heat_bucket_key("cam1", minute - 5), encode_error_map(np.pad(hot_spot_map(), 16)))
    response = client.get("/api/cameras/cam1/heatmap.png", params={"window": "10m"})
    assert response.status_code == 200
    assert decode_png(response.content).shape == (320 + rendering.SCALE_BAR_HEIGHT, 480, 3)
    assert client.get("/api/cameras/cam1/heatmap.png").status_code == 200  # default window: 1h


def test_camera_heatmap_errors(client: TestClient, redis_client: redis.Redis) -> None:
    add_camera(redis_client)
    old_minute = int(time.time() // 60) - 120
    redis_client.set(keys.heat_bucket_key("cam1", old_minute), encode_error_map(hot_spot_map()))
    response = client.get("/api/cameras/cam1/heatmap.png", params={"window": "1h"})
    assert response.status_code == 404
    assert response.json()["detail"] == "camera 'cam1' had no anomalous frames in the last 1h"
    assert client.get("/api/cameras/cam1/heatmap.png", params={"window": "3h"}).status_code == 200
    assert client.get("/api/cameras/ghost/heatmap.png").json()["detail"] == "no camera with id 'ghost'"
    for window in ("abc", "0m", "30s", "8d", "1.5h", ""):
        response = client.get("/api/cameras/cam1/heatmap.png", params={"window": window})
        assert response.status_code == 422, window
        assert response.json()["detail"][0]["loc"] == ["query", "window"]


def write_scores(client: redis.Redis, camera: str, count: int, start_ts: float) -> None:
    for seq in range(count):
        score = schemas.ScoreMessage(
            camera=camera,
            seq=seq,
            ts=start_ts + seq,
            frame_id=f"{seq + 1}-0",
            score=seq / count,
            raw=float(seq),
            model="motion-baseline",
            anomalous=seq >= count - 2,
            session=2,
        )
        client.xadd(keys.scores_stream(camera), score.to_fields())


def test_scores_are_the_newest_oldest_first_and_bounded(
    client: TestClient, redis_client: redis.Redis
) -> None:
    add_camera(redis_client)
    start = time.time() - 10
    write_scores(redis_client, "cam1", 10, start)
    points = client.get("/api/cameras/cam1/scores").json()
    assert [point["seq"] for point in points] == list(range(10))
    newest = points[-1]
    assert {k: newest[k] for k in ("seq", "ts", "score", "anomalous", "raw", "model", "session")} == {
        "seq": 9,
        "ts": start + 9,
        "score": 0.9,
        "anomalous": True,
        "raw": 9.0,
        "model": "motion-baseline",
        "session": 2,
    }
    assert newest["scored_ts"] >= newest["ts"] and newest["cursor"] > points[-2]["cursor"]
    assert [p["seq"] for p in client.get("/api/cameras/cam1/scores", params={"limit": 3}).json()] == [7, 8, 9]
    since = client.get("/api/cameras/cam1/scores", params={"since": start + 6}).json()
    assert [point["seq"] for point in since] == [6, 7, 8, 9]
    assert client.get("/api/cameras/cam1/scores", params={"limit": 0}).status_code == 422
    for bad in ({"after": "x"}, {"after": "1-0", "before": "5-0"}):
        response = client.get("/api/cameras/cam1/scores", params=bad)
        assert response.status_code == 422 and "Traceback" not in response.text


def test_scores_page_with_a_cursor_both_ways(client: TestClient, redis_client: redis.Redis) -> None:
    add_camera(redis_client)
    write_scores(redis_client, "cam1", 10, time.time() - 10)

    def page(**params: str | int) -> list[int]:
        return [p["seq"] for p in client.get("/api/cameras/cam1/scores", params=params).json()]

    cursors = [p["cursor"] for p in client.get("/api/cameras/cam1/scores").json()]
    assert page(limit=4) == [6, 7, 8, 9]
    assert page(limit=4, before=cursors[6]) == [2, 3, 4, 5]
    assert page(limit=4, before=cursors[2]) == [0, 1]
    assert page(limit=4, after=cursors[2]) == [3, 4, 5, 6]
    assert page(limit=4, after=cursors[9]) == []
    assert page(before="0-0") == [] and page(after="9999999999999999999-9999999999999999999") == []
    assert client.get("/api/cameras/cam1/scores", params={"since": "yesterday"}).status_code == 422


def test_scores_of_a_camera_without_scores_or_of_no_camera(
    client: TestClient, redis_client: redis.Redis
) -> None:
    add_camera(redis_client)
    assert client.get("/api/cameras/cam1/scores").json() == []
    response = client.get("/api/cameras/ghost/scores")
    assert response.status_code == 404 and response.json()["detail"] == "no camera with id 'ghost'"
    assert client.get("/api/cameras/bad%20id/scores").status_code == 422


def test_alert_clip_lists_display_frames_around_the_alert_and_serves_them(
    client: TestClient, redis_client: redis.Redis, write_alert: AlertWriter
) -> None:
    alert, _ = write_alert("cam1-10", camera="cam1", state="closed")  # 5 s long
    ok, jpeg = cv2.imencode(".jpg", np.full((24, 32, 3), 128, dtype=np.uint8))
    assert ok
    for offset in (-3, 0, 2, 4, 10):  # stream ids are capture times in ms, as the ingest worker writes them
        ts = alert.start_ts + offset
        message = schemas.DisplayMessage(camera="cam1", seq=100 + offset, ts=ts, jpeg=jpeg.tobytes())
        redis_client.xadd(keys.display_stream("cam1"), message.to_fields(), id=f"{int(ts * 1000)}-0")
    clip = client.get(f"/api/alerts/{alert.id}/clip").json()
    assert [frame["seq"] for frame in clip] == [100, 102, 104]  # within 2 s of the alert's start and end
    image = client.get(clip[0]["url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert client.get("/api/cameras/cam1/display/1-0.jpg").status_code == 404
    assert client.get("/api/alerts/nope/clip").status_code == 404
