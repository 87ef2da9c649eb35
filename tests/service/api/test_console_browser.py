"""The operator console in a real browser (Debian's chromium through playwright) against the real API served
by uvicorn, a real Redis and a real inference worker scoring frames with the motion baseline.

Screenshots land in tests/artifacts/. Skipped when chromium or playwright is missing:
`apt-get install -y chromium` and `pip install playwright` (never `playwright install`: the system browser is used).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
import redis
import uvicorn

from models.detector.motion import MotionBaseline
from service.api.app import create_app
from workers.bus import keys, schemas
from workers.bus.connection import connect, free_port
from workers.config import Settings
from workers.inference.worker import InferenceWorker
from workers.store import labels, model_registry, snoozes

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
OPERATOR_TOKEN = "console-operator-token"
HEIGHT, WIDTH = 64, 96
CAMERA = "walkway"

try:
    from playwright import sync_api
except ImportError:  # the browser tests skip; the page's own checks still run
    sync_api = None


def settings_for(redis_url: str) -> Settings:
    settings = Settings(redis_url=redis_url, heartbeat_s=0.2, operator_token=OPERATOR_TOKEN)
    settings.inference.lease_ttl_ms = 600
    return settings


class ConsoleServer:
    """The API with the console, served by uvicorn on a thread on a fixed loopback port (so it can restart)."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> ConsoleServer:
        config = uvicorn.Config(
            create_app(settings_for(self.redis_url)),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(10)
            assert not self.thread.is_alive(), "uvicorn did not stop"


@pytest.fixture
def console_server(redis_url: str) -> Iterator[ConsoleServer]:
    server = ConsoleServer(redis_url).start()
    yield server
    server.stop()


@pytest.fixture
def console_url(console_server: ConsoleServer) -> str:
    return console_server.url


@pytest.fixture
def inference_worker(redis_url: str) -> Iterator[InferenceWorker]:
    worker = InferenceWorker(
        settings_for(redis_url),
        redis_url,
        worker_id="console-test",
        detector=MotionBaseline(HEIGHT, WIDTH),
    )
    thread = threading.Thread(target=worker.run, name="inference", daemon=True)
    thread.start()
    yield worker
    worker.stop()
    thread.join(10)


@pytest.fixture
def page(console_url: str) -> Iterator[sync_api.Page]:
    """The console in chromium; at the end, no script errors and nothing requested from another origin."""
    if not CHROMIUM.exists():
        pytest.skip(f"browser tests need {CHROMIUM}: apt-get install -y chromium")
    if sync_api is None:
        pytest.skip("browser tests need playwright: pip install playwright (it uses the system chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        browser_page = browser.new_page(viewport={"width": 1280, "height": 800})
        errors: list[str] = []
        foreign: list[str] = []
        browser_page.on("pageerror", lambda error: errors.append(str(error)))
        browser_page.on(
            "request",
            lambda request: (
                None
                if request.url.startswith((console_url, "ws://127.0.0.1", "blob:", "data:"))
                else foreign.append(request.url)
            ),
        )
        browser_page.goto(console_url)
        yield browser_page
        browser.close()
        assert not errors, f"errors in the page: {errors}"
        assert not foreign, f"the page fetched from elsewhere: {foreign}"


def scene(seq: int, rng: np.random.Generator, square: bool) -> np.ndarray:
    frame = np.full((HEIGHT, WIDTH), 90, dtype=np.uint8)
    frame[HEIGHT // 2 :, :] = 130  # a floor, so the picture is not a flat grey
    frame = np.clip(frame + rng.normal(0, 2, frame.shape), 0, 255).astype(np.uint8)
    if square:
        x = (seq * 4) % (WIDTH - 12)
        frame[20:32, x : x + 12] = 250
    return frame


def stream_frames(client: redis.Redis, anomalous: range, count: int, interval_s: float) -> None:
    """Write analysis frames with their display JPEGs, like the ingest worker, with real capture times."""
    rng = np.random.default_rng(0)
    for seq in range(count):
        gray = scene(seq, rng, square=seq in anomalous)
        ts = time.time()
        frame = schemas.FrameMessage(
            camera=CAMERA, seq=seq, ts=ts, session=0, width=WIDTH, height=HEIGHT, gray=gray.tobytes()
        )
        colour = cv2.applyColorMap(cv2.resize(gray, (WIDTH * 5, HEIGHT * 5)), cv2.COLORMAP_BONE)
        jpeg = cv2.imencode(".jpg", colour)[1].tobytes()
        display = schemas.DisplayMessage(camera=CAMERA, seq=seq, ts=ts, jpeg=jpeg)
        pipe = client.pipeline(transaction=False)
        pipe.xadd(keys.frames_stream(CAMERA), frame.to_fields())
        pipe.set(keys.snapshot_key(CAMERA), jpeg)
        pipe.xadd(keys.display_stream(CAMERA), display.to_fields())
        pipe.execute()
        time.sleep(interval_s)


def add_camera(client: redis.Redis) -> None:
    config = schemas.CameraConfig(id=CAMERA, source="test://frames", width=WIDTH, height=HEIGHT)
    client.hset(keys.CAMERAS, CAMERA, config.model_dump_json())
    status = schemas.CameraStatus(
        camera=CAMERA, state="streaming", message="streaming test://frames", fps=10.0
    )
    client.hset(keys.CAMERA_STATUS, CAMERA, status.model_dump_json())


def screenshot(page: sync_api.Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"console-{name}.png"), full_page=True)


def test_console_page_and_its_files_are_served(console_url: str) -> None:
    page_html = httpx.get(f"{console_url}/")
    assert page_html.status_code == 200 and page_html.headers["content-type"].startswith("text/html")
    assert '<script src="/static/app.js"' in page_html.text
    for name, media_type in (("app.js", "text/javascript"), ("app.css", "text/css")):
        response = httpx.get(f"{console_url}/static/{name}")
        assert response.status_code == 200 and response.headers["content-type"].startswith(media_type)
    missing = httpx.get(f"{console_url}/static/../app.py")
    assert missing.status_code == 404
    assert httpx.get(f"{console_url}/static/index.py").json() == {"detail": "no static file 'index.py'"}


def test_console_shows_a_live_alert_with_its_heatmap_and_sends_feedback(
    page: sync_api.Page, redis_url: str, inference_worker: InferenceWorker
) -> None:
    client = connect(redis_url)
    add_camera(client)
    expect = sync_api.expect
    expect(page.locator(".tile")).to_have_count(1, timeout=10_000)  # the camera list is polled every 5 s
    expect(page.locator("#feed-status")).to_have_text("live")
    expect(page.locator(".alert-item")).to_have_count(0)

    writer = threading.Thread(target=stream_frames, args=(client, range(60, 80), 110, 0.03), daemon=True)
    writer.start()
    alert_item = page.locator(".alert-item").first
    expect(alert_item).to_be_visible(timeout=20_000)  # over the WebSocket: the page is never reloaded
    expect(alert_item).to_contain_text(CAMERA)
    writer.join(15)
    expect(page.locator(".tile .score-value")).not_to_have_text("–", timeout=10_000)
    page.wait_for_timeout(2500)  # one more snapshot and sparkline refresh before the screenshot
    screenshot(page, "overview")

    alert_item.click()
    expect(page.locator("#detail")).to_be_visible()
    page.wait_for_function("document.getElementById('alert-heatmap').naturalWidth > 0", timeout=10_000)
    assert page.evaluate("document.getElementById('alert-heatmap').naturalWidth") >= 480
    alert_id = page.locator("#alert-facts dd").last.inner_text()
    assert client.hexists(keys.ALERTS, alert_id)

    page.fill("#token-input", OPERATOR_TOKEN)
    page.click("#token-form button")
    with (
        page.expect_request(lambda r: r.url.endswith("/api/feedback") and r.method == "POST") as sent,
        page.expect_response(lambda r: r.url.endswith("/api/feedback")) as answered,
    ):
        page.click("#alert-detail .label-abnormal")
    assert sent.value.post_data_json == {"alert_id": alert_id, "label": "abnormal"}
    assert sent.value.headers["authorization"] == f"Bearer {OPERATOR_TOKEN}"
    message = page.locator("#feedback-message")
    if answered.value.status == 404:  # an API without the feedback endpoint: said so, not a silent failure
        expect(message).to_have_text("Feedback is not available in this version of the API (404).")
    else:
        assert answered.value.ok, answered.value.text()
        expect(message).to_contain_text("Labelled abnormal")
        # "this is normal here": a kind of event the site accepts, named
        page.click("#alert-detail .label-accept-kind")
        expect(message).to_have_text("Name the kind of event this site accepts, e.g. cyclist.")
        page.fill("#accept-kind", "cyclist")
        with page.expect_request(lambda r: r.url.endswith("/api/feedback") and r.method == "POST") as sent:
            page.click("#alert-detail .label-accept-kind")
        assert sent.value.post_data_json == {"alert_id": alert_id, "label": "normal", "category": "cyclist"}
        expect(message).to_contain_text("Labelled normal here (cyclist)")
        latest = labels.camera_labels(client, CAMERA)[-1]
        assert (latest.alert_id, latest.label, latest.category) == (alert_id, "normal", "cyclist")
    screenshot(page, "alert-detail")

    page.click("#detail-close")
    page.click(".tile .tile-heat")
    page.wait_for_function("document.getElementById('camera-heatmap').naturalWidth > 0", timeout=10_000)
    expect(page.locator("#camera-heatmap-note")).to_have_text(
        "Where anomalous frames were over the last 1h, on the latest image."
    )
    screenshot(page, "camera-heat")


def test_console_draws_and_saves_an_ignore_zone(page: sync_api.Page, redis_client: redis.Redis) -> None:
    add_camera(redis_client)
    stream_frames(redis_client, range(0), 1, 0)
    expect = sync_api.expect
    expect(page.locator(".tile")).to_have_count(1, timeout=10_000)
    page.fill("#token-input", OPERATOR_TOKEN)
    page.click("#token-form button")
    page.click(".tile .tile-zones")
    page.wait_for_function("document.getElementById('zone-image').naturalWidth > 0", timeout=10_000)
    canvas = page.locator("#zone-canvas")
    box = canvas.bounding_box()
    assert box is not None
    for x, y in ((0.1, 0.1), (0.5, 0.1), (0.5, 0.5), (0.1, 0.5)):
        canvas.click(position={"x": x * box["width"], "y": y * box["height"]})
    page.click("#zone-close")
    page.click("#zone-save")
    expect(page.locator("#zone-message")).to_have_text(
        "Saved 1 zone; the detector ignores them from now on.", timeout=10_000
    )
    screenshot(page, "zones")
    config = schemas.CameraConfig.model_validate_json(redis_client.hget(keys.CAMERAS, CAMERA))
    [zone] = config.ignore_zones
    assert np.allclose(zone.points, [(0.1, 0.1), (0.5, 0.1), (0.5, 0.5), (0.1, 0.5)], atol=0.01)
    assert config.source == "test://frames"  # the rest of the camera's settings unchanged

    # an outline snoozed for an hour instead of ignored for good
    page.click("#zone-snooze")
    expect(page.locator("#zone-message")).to_have_text(
        "Outline the area to snooze first (at least 3 points), then snooze it."
    )
    for x, y in ((0.6, 0.6), (0.9, 0.6), (0.9, 0.9)):
        canvas.click(position={"x": x * box["width"], "y": y * box["height"]})
    page.click("#zone-snooze")
    expect(page.locator("#zone-message")).to_contain_text("No alert from that area until", timeout=10_000)
    snooze = snoozes.get_snooze(redis_client, CAMERA, time.time())
    [snoozed] = snooze.zones
    assert np.allclose(snoozed.points, [(0.6, 0.6), (0.9, 0.6), (0.9, 0.9)], atol=0.01)
    assert 3500 < snoozed.until_ts - time.time() <= 3600 and snooze.until_ts <= time.time()  # the zone only


def test_console_adds_and_removes_a_camera(page: sync_api.Page, redis_client: redis.Redis) -> None:
    expect = sync_api.expect
    page.click("#add-camera summary")
    page.fill("#camera-form [name=id]", "door-2")
    page.fill("#camera-form [name=source]", "rtsp://guard:pw@10.1.1.9/stream")
    page.click("#camera-form button")
    expect(page.locator("#camera-message")).to_have_text(
        "Camera not added: 401: this endpoint needs the operator token: send 'Authorization: Bearer <token>' "
        "(set the operator token at the top)"
    )
    page.fill("#token-input", OPERATOR_TOKEN)
    page.click("#token-form button")
    page.click("#camera-form button")  # the form keeps what was typed
    expect(page.locator("#camera-message")).to_have_text("Camera door-2 added.")
    expect(page.locator(".tile")).to_have_count(1)
    assert page.locator(".tile .tile-message").get_attribute("title") == "rtsp://***@10.1.1.9/stream"
    assert schemas.CameraConfig.model_validate_json(
        redis_client.hget(keys.CAMERAS, "door-2")
    ).source.startswith("rtsp://guard:pw@")
    screenshot(page, "camera-added")
    page.click(".tile .tile-snooze")
    expect(page.locator("#camera-message")).to_have_text("Camera door-2 snoozed for an hour.")
    expect(page.locator(".tile .tile-snooze")).to_have_text("Unsnooze")
    assert redis_client.hexists(keys.SNOOZES, "door-2")
    page.click(".tile .tile-snooze")
    expect(page.locator("#camera-message")).to_have_text("Camera door-2 unsnoozed.")
    expect(page.locator(".tile .tile-snooze")).to_have_text("Snooze 1 h")
    assert not redis_client.hexists(keys.SNOOZES, "door-2")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click(".tile .tile-remove")
    expect(page.locator("#camera-message")).to_have_text("Camera door-2 removed.")
    expect(page.locator(".tile")).to_have_count(0)
    assert not redis_client.hexists(keys.CAMERAS, "door-2")


def write_alert(client: redis.Redis, alert_id: str) -> str:
    """An alert and its `new` event, as the inference worker writes them; returns the event id."""
    now = time.time()
    alert = schemas.Alert(
        id=alert_id, camera=CAMERA, state="open", start_ts=now, start_seq=1, last_seq=3, peak_score=0.8,
        peak_seq=2, peak_ts=now, model="motion-baseline",
    )  # fmt: skip
    client.hset(keys.ALERTS, alert.id, alert.model_dump_json())
    client.zadd(keys.ALERTS_BY_TIME, {alert.id: int(now * 1000)})
    return client.xadd(keys.ALERT_EVENTS, schemas.AlertEvent.of("new", alert).to_fields()).decode()


def test_the_alert_feed_resumes_after_the_last_event_seen(
    page: sync_api.Page, console_server: ConsoleServer, redis_client: redis.Redis
) -> None:
    expect = sync_api.expect
    sockets: list[str] = []
    page.on("websocket", lambda socket: sockets.append(socket.url))
    expect(page.locator("#feed-status")).to_have_text("live")
    seen_event = write_alert(redis_client, "before-outage")
    expect(page.locator(".alert-item")).to_have_count(1)
    console_server.stop()
    expect(page.locator("#feed-status")).to_have_text("reconnecting…")
    write_alert(redis_client, "during-outage")  # only the event stream can tell the page about it
    redis_client.hdel(keys.ALERTS, "during-outage")
    console_server.start()
    expect(page.locator("#feed-status")).to_have_text("live", timeout=20_000)
    expect(page.locator(".alert-item")).to_have_count(2)
    assert sockets[-1].endswith(f"/ws/alerts?last_id={seen_event}")


def test_the_model_badge_says_why_the_version_serves_and_the_moved_camera_s_tile_says_so(
    page: sync_api.Page, redis_client: redis.Redis
) -> None:
    """A camera whose view moved: the retraining worker served the model with its place map silenced for
    it; the console's model badge says why, and that camera's tile (not the other's) that its view moved."""
    for camera in ("gate", "lobby"):
        config = schemas.CameraConfig(id=camera, source="test://frames", width=WIDTH, height=HEIGHT)
        redis_client.hset(keys.CAMERAS, camera, config.model_dump_json())
    reason = (
        "the place map silenced for camera lobby: even its own quietest quarter moved where the map says "
        "nothing does (z 4.2 over its gate)"
    )
    version = schemas.ModelVersion(
        version="site-2",
        path="",
        kind="motion-appearance-place",
        origin="self_training",
        reason=reason,
        place_silenced_cameras=["lobby"],
    )
    assert model_registry.publish(redis_client, version, None)
    page.reload()
    badge = page.locator("#model")
    sync_api.expect(badge).to_have_text("model site-2", timeout=10_000)
    sync_api.expect(badge).to_have_attribute("title", f"Why this model serves: {reason}")
    moved = page.locator('.tile[data-camera="lobby"] .tile-moved')
    sync_api.expect(moved).to_be_visible()
    sync_api.expect(moved).to_have_text("view moved")
    assert "scored without that map" in (title := moved.get_attribute("title") or "")
    assert "vigil train --all-cameras" in title  # what a camera the model was never fitted to needs
    sync_api.expect(page.locator('.tile[data-camera="gate"] .tile-moved')).to_be_hidden()
    screenshot(page, "view-moved")
