"""The MQTT sink against a real mosquitto on loopback: events, state, discovery, commands, a restart."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator

import paho.mqtt.client as mqtt
import pytest
import redis

from tests.workers.inference.test_worker import wait_for
from tests.workers.notify.conftest import Broker
from tests.workers.notify.test_webhooks import write_event
from workers.bus import keys
from workers.config import MqttSettings, Settings
from workers.notify.mqtt import MqttWorker
from workers.store.cameras import get_camera, put_camera


class Listener:
    """A subscriber to vigil/# and homeassistant/# with a persistent session (QoS 1): it is handed what
    was published while a restarted broker had it disconnected."""

    def __init__(self, broker: Broker) -> None:
        self.messages: list[tuple[str, str, bool]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="listener", clean_session=False)
        self.client.on_connect = lambda c, *_: c.subscribe([("vigil/#", 1), ("homeassistant/#", 1)])
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def _on_message(self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((message.topic, message.payload.decode(), bool(message.retain)))

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
    put_camera(redis_client, keys.CameraConfig(id="cam1", source="test://"))
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
    redis_client.xadd(keys.scores_stream("cam1"), keys.ScoreMessage(camera="cam1", seq=7, ts=1.0, frame_id="1-0", score=0.25,
                      raw=1.0, anomalous=False, model="m").to_fields())  # fmt: skip
    wait_for(lambda: listener.on("vigil/cam1/score") == ["0.250"])
    worker.stop()
    wait_for(lambda: listener.on("vigil/available")[-1:] == ["offline"])


def test_a_camera_is_disabled_and_enabled_over_mqtt(
    redis_client: redis.Redis, listener: Listener, run_mqtt: Callable[[], MqttWorker]
) -> None:
    put_camera(redis_client, keys.CameraConfig(id="cam1", source="test://"))
    run_mqtt()
    listener.client.publish("vigil/cam1/set", "OFF", qos=1)
    wait_for(lambda: get_camera(redis_client, "cam1").enabled is False)
    listener.client.publish("vigil/cam1/set", "ON", qos=1)
    wait_for(lambda: get_camera(redis_client, "cam1").enabled is True)


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
