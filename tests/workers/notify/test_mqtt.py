"""The MQTT sink against a real mosquitto on loopback: events, state, discovery, commands, a restart."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import redis

from tests.waiting import wait_for
from tests.workers.notify.conftest import Broker, make_tls_files
from tests.workers.notify.test_webhooks import write_event
from workers.bus import keys, schemas
from workers.config import MqttSettings, Settings
from workers.notify.mqtt import MqttWorker
from workers.store.cameras import get_camera, put_camera
from workers.store.snoozes import get_snooze


class Listener:
    """A subscriber to vigil/# and homeassistant/# with a persistent session (QoS 1): it is handed what
    was published while a restarted broker had it disconnected."""

    def __init__(
        self, broker: Broker, *, user: tuple[str, str] | None = None, ca: Path | None = None
    ) -> None:
        self.messages: list[tuple[str, str, bool]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="listener", clean_session=False)
        if user is not None:
            self.client.username_pw_set(*user)
        if ca is not None:
            self.client.tls_set(ca_certs=str(ca))
        self.client.on_connect = lambda c, *_: c.subscribe([("vigil/#", 1), ("homeassistant/#", 1)])
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def _on_message(self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append(
                (message.topic, message.payload.decode(errors="replace"), bool(message.retain))
            )

    def on(self, topic: str) -> list[str]:
        with self.lock:
            return [payload for t, payload, _ in self.messages if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def listener(broker: Broker) -> Iterator[Listener]:
    subscriber = Listener(broker)
    wait_for(lambda: subscriber.client.is_connected())
    yield subscriber
    subscriber.close()


@pytest.fixture
def run_mqtt(
    redis_url: str, broker: Broker, run_worker: Callable[[MqttWorker], MqttWorker]
) -> Callable[[], MqttWorker]:
    def start() -> MqttWorker:
        config = MqttSettings(url=broker.url, retry_max_s=0.5, timeout_s=2, score_interval_s=0.2)
        worker = run_worker(MqttWorker(Settings(heartbeat_s=0.2, mqtt=config), redis_url))
        wait_for(lambda: worker.connected.is_set())
        return worker

    return start


def test_events_state_discovery_and_availability(
    redis_client: redis.Redis, listener: Listener, run_mqtt: Callable[[], MqttWorker]
) -> None:
    put_camera(redis_client, schemas.CameraConfig(id="cam1", source="test://"))
    worker = run_mqtt()
    ids = [
        write_event(redis_client, 0),
        write_event(redis_client, 1, "update"),
        write_event(redis_client, 2, "end"),
    ]
    wait_for(lambda: len(listener.on("vigil/events")) == 3)
    events = [json.loads(payload) for payload in listener.on("vigil/events")]
    assert [e["id"] for e in events] == ids and [e["type"] for e in events] == ["new", "update", "end"]
    alert = events[0]["alert"]
    assert (alert["camera"], alert["peak_score"], alert["model"]) == ("cam1", 0.9, "motion-baseline")
    assert alert["clip_url"] == "/api/alerts/cam1-0/clip.mp4" and alert["heatmap_url"].endswith("heatmap.png")
    assert listener.on("vigil/cam1/anomaly") == ["ON", "ON", "OFF"]
    assert "online" in listener.on("vigil/available")
    wait_for(lambda: listener.on("homeassistant/sensor/vigil_cam1/score/config"))
    binary = json.loads(listener.on("homeassistant/binary_sensor/vigil_cam1/anomaly/config")[0])
    assert binary["state_topic"] == "vigil/cam1/anomaly" and binary["availability_topic"] == "vigil/available"
    redis_client.xadd(keys.scores_stream("cam1"), schemas.ScoreMessage(camera="cam1", seq=7, ts=1.0, frame_id="1-0", score=0.25,
                      raw=1.0, anomalous=False, model="m").to_fields())  # fmt: skip
    wait_for(lambda: listener.on("vigil/cam1/score") == ["0.250"])
    worker.stop()
    wait_for(lambda: listener.on("vigil/available")[-1:] == ["offline"])


def test_a_camera_is_disabled_enabled_and_snoozed_over_mqtt(
    redis_client: redis.Redis, listener: Listener, run_mqtt: Callable[[], MqttWorker]
) -> None:
    put_camera(redis_client, schemas.CameraConfig(id="cam1", source="test://"))
    run_mqtt()
    switch = "homeassistant/switch/vigil_cam1/enabled/config"
    wait_for(lambda: listener.on(switch) and listener.on("vigil/cam1/enabled") == ["ON"])
    config = json.loads(listener.on(switch)[0])
    assert (config["command_topic"], config["state_topic"]) == ("vigil/cam1/set", "vigil/cam1/enabled")
    listener.client.publish("vigil/cam1/set", "OFF", qos=1)  # as a Home Assistant switch sends it
    wait_for(lambda: get_camera(redis_client, "cam1").enabled is False)
    wait_for(lambda: listener.on("vigil/cam1/enabled")[-1:] == ["OFF"])
    listener.client.publish("vigil/cam1/set", '{"enabled": true}', qos=1)
    wait_for(lambda: get_camera(redis_client, "cam1").enabled is True)
    started = time.time()
    listener.client.publish("vigil/cam1/set", '{"snooze_s": 600}', qos=1)
    wait_for(lambda: get_snooze(redis_client, "cam1", time.time()).until_ts > 0)
    assert get_snooze(redis_client, "cam1", time.time()).until_ts == pytest.approx(started + 600, abs=5)
    listener.client.publish("vigil/cam1/set", '{"snooze_s": 0}', qos=1)
    wait_for(lambda: get_snooze(redis_client, "cam1", time.time()).until_ts == 0)


BAD_COMMANDS = [
    ("vigil/cam1/set", b"maybe", "payload must be ON, OFF"),
    ("vigil/cam1/set", b'{"snooze_s": -5}', "snooze_s"),
    ("vigil/cam1/set", b'{"snooze_s": "600"}', "snooze_s"),
    ("vigil/cam1/set", b'{"snooze_s": 9999999}', "snooze_s"),
    ("vigil/cam1/set", b'{"enabled": "no"}', "enabled"),
    ("vigil/cam1/set", b'{"colour": "red"}', "colour"),
    ("vigil/cam1/set", b"{}", "give enabled and/or snooze_s"),
    ("vigil/cam1/set", b'{"snooze_s": 6', "not valid JSON"),
    ("vigil/cam1/set", b"\xff\xfe" * 600, "payload over"),
    ("vigil/nope/set", b"OFF", "no such camera"),
]


def test_bad_commands_are_logged_and_ignored(
    redis_client: redis.Redis,
    listener: Listener,
    run_mqtt: Callable[[], MqttWorker],
    caplog: pytest.LogCaptureFixture,
) -> None:
    put_camera(redis_client, schemas.CameraConfig(id="cam1", source="test://"))
    caplog.set_level(logging.INFO, logger="vigil.notify")
    worker = run_mqtt()
    for topic, payload, _ in BAD_COMMANDS:
        listener.client.publish(topic, payload, qos=1)
    ignored = lambda: [r.getMessage() for r in caplog.records if "mqtt_command_ignored" in r.getMessage()]  # noqa: E731
    wait_for(lambda: len(ignored()) == len(BAD_COMMANDS))
    for line, (_, _, reason) in zip(ignored(), BAD_COMMANDS, strict=True):
        assert reason in line, line
    assert get_camera(redis_client, "cam1").enabled is True
    assert get_snooze(redis_client, "cam1", time.time()).until_ts == 0
    assert redis_client.hget(keys.CAMERAS, "nope") is None  # an unknown camera is not created
    listener.client.publish("vigil/cam1/set", "OFF", qos=1)  # the worker is still there
    wait_for(lambda: get_camera(redis_client, "cam1").enabled is False)
    assert not worker.stop_event.is_set()


def test_a_broker_restart_loses_no_event(
    redis_client: redis.Redis, broker: Broker, listener: Listener, run_mqtt: Callable[[], MqttWorker]
) -> None:
    worker = run_mqtt()
    ids = [write_event(redis_client, seq) for seq in range(3)]
    wait_for(lambda: len(listener.on("vigil/events")) == 3)
    broker.stop()
    wait_for(lambda: not worker.connected.is_set())
    ids += [write_event(redis_client, seq) for seq in range(3, 8)]  # written while the broker is away
    broker.start()
    wait_for(lambda: len({json.loads(p)["id"] for p in listener.on("vigil/events")}) == 8, timeout_s=30)
    received = [json.loads(payload)["id"] for payload in listener.on("vigil/events")]
    assert list(dict.fromkeys(received)) == ids  # every event, in order (a repeat is allowed: at least once)
    assert worker.deliveries[0].given_up == 0


USER = ("vigil", "s3cret-pass")


def test_credentials_from_secret_references_over_tls(
    redis_client: redis.Redis,
    redis_url: str,
    tmp_path: Path,
    start_broker: Callable[..., Broker],
    run_worker: Callable[[MqttWorker], MqttWorker],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    tls = make_tls_files(tmp_path)
    broker = start_broker(user=USER, tls=tls)
    monkeypatch.setenv("MQTT_USER", USER[0])
    monkeypatch.setenv("MQTT_PASSWORD", USER[1])
    listener = Listener(broker, user=USER, ca=tls.ca)
    try:
        wait_for(lambda: listener.client.is_connected())
        url = f"mqtts://${{MQTT_USER}}:${{MQTT_PASSWORD}}@127.0.0.1:{broker.port}"
        config = MqttSettings(url=url, tls_ca=tls.ca, retry_max_s=0.5, timeout_s=2)
        worker = run_worker(MqttWorker(Settings(heartbeat_s=0.2, mqtt=config), redis_url))
        wait_for(lambda: worker.connected.is_set())
        event_id = write_event(redis_client, 0)
        wait_for(lambda: listener.on("vigil/events"))
        assert json.loads(listener.on("vigil/events")[0])["id"] == event_id
    finally:
        listener.close()
    assert "mqtt_connected" in caplog.text and USER[1] not in caplog.text  # the secret is never logged


def test_a_wrong_password_is_logged_and_retried(
    redis_client: redis.Redis,
    redis_url: str,
    start_broker: Callable[..., Broker],
    run_worker: Callable[[MqttWorker], MqttWorker],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="vigil.notify")
    broker = start_broker(user=USER)
    url = f"mqtt://{USER[0]}:wrong@127.0.0.1:{broker.port}"
    config = MqttSettings(url=url, retry_max_s=0.5, timeout_s=2)
    worker = run_worker(MqttWorker(Settings(heartbeat_s=0.2, mqtt=config), redis_url))
    refused = lambda: [r for r in caplog.records if "mqtt_refused" in r.getMessage()]  # noqa: E731
    wait_for(lambda: len(refused()) >= 2, timeout_s=20)  # refused, and tried again
    assert (
        "reason='Not authorized'" in refused()[0].getMessage()
        and "VIGIL_MQTT__URL" in refused()[0].getMessage()
    )
    assert refused()[0].levelno == logging.ERROR
    assert not worker.connected.is_set() and not worker.stop_event.is_set()
    assert "wrong" not in caplog.text


def test_a_broker_whose_certificate_is_not_trusted_is_logged_and_retried(
    redis_url: str,
    tmp_path: Path,
    start_broker: Callable[..., Broker],
    run_worker: Callable[[MqttWorker], MqttWorker],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="vigil.notify")
    broker = start_broker(tls=make_tls_files(tmp_path))
    config = MqttSettings(url=broker.url, retry_max_s=0.5, timeout_s=2)  # the system's CAs: not the test's
    worker = run_worker(MqttWorker(Settings(heartbeat_s=0.2, mqtt=config), redis_url))
    failed = lambda: [r for r in caplog.records if "mqtt_connect_failed" in r.getMessage()]  # noqa: E731
    wait_for(lambda: len(failed()) >= 2, timeout_s=20)
    assert (
        "CERTIFICATE_VERIFY_FAILED" in failed()[0].getMessage()
        and "VIGIL_MQTT__TLS_CA" in failed()[0].getMessage()
    )
    assert not worker.connected.is_set() and not worker.stop_event.is_set()
