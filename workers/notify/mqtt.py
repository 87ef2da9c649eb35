"""MQTT sink for camera-site tools (Home Assistant, Node-RED): alert events, per-camera state, score and
enabled state, availability with a last will, Home Assistant discovery, and `<prefix>/<camera>/set` to
enable, disable or snooze a camera (workers/notify/mqtt_commands.py).

Alert events go out in order, at least once (workers/notify/delivery.py): an event is acknowledged once
the broker acknowledged it (QoS 1); while the broker is away it is retried, and nothing is lost.
"""

from __future__ import annotations

import json
import logging
import queue
import ssl
import sys
import threading
import time
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt

from workers.bus import keys, schemas
from workers.config import MqttSettings, Settings
from workers.ingest.sources import SourceError, expand_credentials
from workers.notify import mqtt_commands
from workers.notify.delivery import Delivery, EventSink, event_payload
from workers.proc.process import Backoff
from workers.proc.redaction import redact
from workers.store import cameras, frames

AUTH_REFUSALS = frozenset({"Not authorized", "Bad user name or password"})
AUTH_HINT = "check the user and password in VIGIL_MQTT__URL (or the secrets its ${NAME} references name)"
TLS_HINT = "VIGIL_MQTT__TLS_CA must name the CA that signed the broker's certificate (for its host name)"


class Topics:
    """Every topic Vigil publishes or listens on."""

    def __init__(self, prefix: str, discovery_prefix: str) -> None:
        self.prefix = prefix.rstrip("/")
        self.discovery_prefix = discovery_prefix.rstrip("/")
        self.events = f"{self.prefix}/events"
        self.available = f"{self.prefix}/available"
        self.commands = f"{self.prefix}/+/set"

    def anomaly(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/anomaly"

    def score(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/score"

    def enabled(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/enabled"

    def command(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/set"

    def camera_of_command(self, topic: str) -> str | None:
        """The camera of a `<prefix>/<camera>/set` topic."""
        head, _, rest = topic.partition(f"{self.prefix}/")
        camera, _, tail = rest.partition("/")
        return camera if not head and tail == "set" and camera else None

    def discovery(self, camera: str) -> dict[str, dict[str, Any]]:
        """Home Assistant discovery configs (topic: payload): a binary sensor, a score sensor and a switch
        that enables the camera."""
        device = {"identifiers": [f"vigil_{camera}"], "name": f"Vigil {camera}", "manufacturer": "Vigil"}
        common = {"availability_topic": self.available, "device": device}
        node = f"vigil_{camera}"
        return {
            f"{self.discovery_prefix}/binary_sensor/{node}/anomaly/config": {
                **common,
                "name": "Anomaly",
                "unique_id": f"{node}_anomaly",
                "state_topic": self.anomaly(camera),
                "payload_on": "ON",
                "payload_off": "OFF",
                "device_class": "problem",
            },
            f"{self.discovery_prefix}/sensor/{node}/score/config": {
                **common,
                "name": "Anomaly score",
                "unique_id": f"{node}_score",
                "state_topic": self.score(camera),
                "state_class": "measurement",
            },
            f"{self.discovery_prefix}/switch/{node}/enabled/config": {
                **common,
                "name": "Enabled",
                "unique_id": f"{node}_enabled",
                "state_topic": self.enabled(camera),
                "command_topic": self.command(camera),
                "payload_on": "ON",
                "payload_off": "OFF",
            },
        }


def alert_urls(alert_id: str) -> dict[str, str]:
    """The API paths of an alert's media (relative: the API's address is the site's to know)."""
    base = f"/api/alerts/{alert_id}"
    return {
        "heatmap_url": f"{base}/heatmap.png",
        "clip_url": f"{base}/clip.mp4",
        "snapshot_url": f"{base}/snapshot.jpg",
    }


def new_client(config: MqttSettings, topics: Topics) -> tuple[mqtt.Client, str, int]:
    """A paho client for the broker URL (credentials expanded only here), its last will set; with the host
    and port to connect to. Raises SourceError (safe to show) for a bad URL or a missing credential."""
    url = urlsplit(expand_credentials(config.url or ""))
    if url.scheme not in ("mqtt", "mqtts") or not url.hostname:
        raise SourceError(
            f"VIGIL_MQTT__URL must be mqtt://host[:port] or mqtts://..., got {redact(config.url or '')!r}"
        )
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=config.client_id)
    if url.username:
        client.username_pw_set(unquote(url.username), unquote(url.password or ""))
    if url.scheme == "mqtts":
        client.tls_set(ca_certs=str(config.tls_ca) if config.tls_ca else None, cert_reqs=ssl.CERT_REQUIRED)
    client.will_set(topics.available, "offline", qos=1, retain=True)
    client.reconnect_delay_set(min_delay=1, max_delay=max(1, int(config.retry_max_s)))
    return client, url.hostname, url.port or (8883 if url.scheme == "mqtts" else 1883)


class MqttWorker(EventSink):
    role = "notify"  # a notify sink, as the webhook worker: health and metrics count it there
    sink = "mqtt"

    def __init__(self, settings: Settings, redis_url: str, *, worker_id: str | None = None) -> None:
        super().__init__(settings, redis_url, worker_id=worker_id)
        self.config = settings.mqtt
        self.max_attempts = self.config.max_attempts
        self.topics = Topics(self.config.topic_prefix, self.config.discovery_prefix)
        backoff = Backoff(max_s=self.config.retry_max_s, initial_s=0.5)
        self.deliveries = [
            Delivery(target=redact(self.config.url or ""), group=keys.MQTT_GROUP, backoff=backoff)
        ]
        self.client: mqtt.Client | None = None
        self.connected = threading.Event()
        self.commands: queue.SimpleQueue[tuple[str, bytes]] = queue.SimpleQueue()  # from paho's thread
        self.announced: set[str] = set()
        self.scores: dict[str, int] = {}  # camera: the frame of the score last published
        self.enabled: dict[str, bool] = {}  # camera: the enabled state last published
        self.next_scores = 0.0

    def setup(self) -> None:
        super().setup()
        client, host, port = new_client(self.config, self.topics)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_message = self._on_message
        client.connect_async(host, port, keepalive=30)
        client.loop_start()
        self.client = client
        self.event("mqtt", broker=self.deliveries[0].target, prefix=self.topics.prefix)

    # paho's network thread: only flags and a queue, no Redis
    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:  # paho tries again after its reconnect delay
            hint = AUTH_HINT if str(reason) in AUTH_REFUSALS else "the broker refused the connection"
            self.event("mqtt_refused", logging.ERROR, broker=self.deliveries[0].target, reason=str(reason),
                       hint=hint, action="retrying")  # fmt: skip
            return
        client.publish(self.topics.available, "online", qos=1, retain=True)
        client.subscribe(self.topics.commands, qos=1)
        self.announced = set()  # a broker that restarted without persistence forgot the retained configs
        self.enabled = {}
        self.connected.set()
        self.event("mqtt_connected")

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        # called inside paho's `except OSError` around the connect: the error is the one being handled
        error = sys.exc_info()[1]
        hint = TLS_HINT if isinstance(error, ssl.SSLError) else "is the broker running and reachable?"
        self.event("mqtt_connect_failed", logging.WARNING, broker=self.deliveries[0].target,
                   error=redact(str(error or "unknown")), hint=hint, action="retrying")  # fmt: skip

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        if self.connected.is_set():
            self.event("mqtt_disconnected", logging.WARNING, reason=str(reason))
        self.connected.clear()

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        camera = self.topics.camera_of_command(message.topic)
        if camera is not None:
            self.commands.put((camera, bytes(message.payload)))

    def _publish(self, topic: str, payload: str, *, retain: bool = False) -> bool:
        """Publish with QoS 1; True once the broker acknowledged it."""
        if self.client is None or not self.connected.is_set():
            return False
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        try:
            info.wait_for_publish(self.config.timeout_s)
        except (RuntimeError, ValueError):  # not queued: the connection went while publishing
            return False
        return info.is_published()

    def send(self, delivery: Delivery, entry_id: str, event: schemas.AlertEvent) -> tuple[bool, str]:
        if not self.connected.is_set():
            return False, "broker not connected"
        payload = event_payload(entry_id, event)
        payload["alert"].update(alert_urls(event.alert_id))
        state = "OFF" if event.type == "end" else "ON"
        ok = self._publish(self.topics.events, json.dumps(payload)) and self._publish(
            self.topics.anomaly(event.camera), state, retain=True
        )
        return ok, "" if ok else f"no acknowledgement from the broker within {self.config.timeout_s:g} s"

    def step(self) -> None:
        self._apply_commands()
        if self.connected.is_set() and self._due():
            self._announce_and_score()
        super().step()

    def _due(self) -> bool:
        now = time.monotonic()
        if now < self.next_scores:
            return False
        self.next_scores = now + self.config.score_interval_s
        return True

    def _announce_and_score(self) -> None:
        """Discovery configs for cameras not announced yet, each camera's enabled state when it changed, and
        its newest score when it moved."""
        for config in cameras.list_cameras(self.redis):
            camera = config.id
            if self.config.discovery and camera not in self.announced:
                sent = [
                    self._publish(t, json.dumps(p), retain=True)
                    for t, p in self.topics.discovery(camera).items()
                ]
                if all(sent):
                    self.announced.add(camera)
            if self.enabled.get(camera) != config.enabled and self._publish(
                self.topics.enabled(camera), "ON" if config.enabled else "OFF", retain=True
            ):
                self.enabled[camera] = config.enabled
            newest = [score for _, score in frames.page_scores(self.redis, camera, None, 1)]
            if newest and self.scores.get(camera) != newest[0].seq and self.client is not None:
                self.client.publish(self.topics.score(camera), f"{newest[0].score:.3f}", qos=0)
                self.scores[camera] = newest[0].seq

    def _apply_commands(self) -> None:
        """Commands received on `<prefix>/<camera>/set`: applied, or logged and ignored when bad."""
        while not self.commands.empty():
            camera, payload = self.commands.get()
            try:
                done = mqtt_commands.apply_command(
                    self.redis, camera, mqtt_commands.parse_command(payload), time.time()
                )
            except mqtt_commands.CommandError as exc:
                self.event("mqtt_command_ignored", logging.WARNING, camera=camera,
                           payload=mqtt_commands.describe(payload), reason=str(exc))  # fmt: skip
                continue
            self.event("mqtt_camera_set", camera=camera, **done)
            self.next_scores = 0.0  # the enabled state goes out now

    def teardown(self) -> None:
        if self.client is None:
            return
        self._publish(self.topics.available, "offline", retain=True)
        self.client.disconnect()
        self.client.loop_stop()
