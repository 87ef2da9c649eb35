"""`vigil mqtt`: publish alert events, camera state and Home Assistant discovery to an MQTT broker."""

from __future__ import annotations

import argparse

from service.cli.commands.common import CommandError, require_redis_url
from workers.config import get_settings
from workers.ingest.sources import SourceError
from workers.notify.mqtt import MqttWorker, Topics, new_client


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "mqtt",
        help="publish alerts to an MQTT broker (VIGIL_MQTT__URL), with Home Assistant discovery",
        description=(
            "Publish every alert event on <prefix>/events, each camera's state on <prefix>/<camera>/anomaly "
            "(ON/OFF, retained) and score on <prefix>/<camera>/score, availability on <prefix>/available, "
            "Home Assistant discovery configs, and follow <prefix>/<camera>/set (ON/OFF) to enable or "
            "disable a camera. `vigil up` runs it when VIGIL_MQTT__URL is set."
        ),
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    if not settings.mqtt.url:
        raise CommandError("no MQTT broker configured: set VIGIL_MQTT__URL, e.g. mqtt://localhost:1883")
    try:  # a bad URL or a missing credential fails here, not in a restart loop
        new_client(settings.mqtt, Topics(settings.mqtt.topic_prefix, settings.mqtt.discovery_prefix))
    except SourceError as exc:
        raise CommandError(str(exc)) from exc
    return MqttWorker(settings, require_redis_url(settings, "mqtt")).run()
