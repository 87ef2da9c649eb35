"""`vigil notify`: deliver alert events to the configured webhooks."""

from __future__ import annotations

import argparse

from service.cli.commands.common import CommandError, require_redis_url
from workers.config import get_settings
from workers.notify.webhooks import WebhookWorker


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "notify",
        help="POST alert events to webhooks (VIGIL_WEBHOOKS__URLS)",
        description=(
            "Send every alert event (new, update, end) as JSON to each URL in VIGIL_WEBHOOKS__URLS, in order, "
            "retrying with backoff until the receiver answers 2xx. `vigil up` runs it when URLs are set."
        ),
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    if not settings.webhooks.urls:
        also = " (for MQTT, run `vigil mqtt`)" if settings.mqtt.url else ""
        raise CommandError(
            "no webhook configured: set VIGIL_WEBHOOKS__URLS, e.g. '[\"https://hooks.example/vigil\"]'" + also
        )
    return WebhookWorker(settings, require_redis_url(settings, "notify")).run()
