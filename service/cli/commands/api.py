"""`vigil api`: serve the HTTP/WebSocket API against the Redis at VIGIL_REDIS_URL."""

from __future__ import annotations

import argparse
import ipaddress
import logging

from service.cli.commands.common import CommandError, require_redis_url
from workers.config import get_settings

log = logging.getLogger("vigil")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "api",
        help="serve the HTTP/WebSocket API (needs VIGIL_REDIS_URL; `vigil up` runs it with everything else)",
        description=(
            "Serve the REST API (cameras, alerts), the live alert WebSocket (/ws/alerts) and the health "
            "probes (/healthz, /readyz) over the shared Redis. API docs at /docs."
        ),
    )
    parser.add_argument("--host", help="address to listen on (default: settings api_host, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default: settings api_port, 8080)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn  # imported here: only serving needs it

    from service.api.app import create_app
    from service.api.routes.ws import MAX_CLIENT_MESSAGE_BYTES

    settings = get_settings()
    require_redis_url(settings, "api")
    port = args.port or settings.api_port
    if not 1 <= port <= 65535:
        raise CommandError(f"--port {port}: expected 1-65535")
    host = args.host or settings.api_host
    if settings.operator_token is None and not is_loopback(host):
        log.warning(
            "the API listens on %s without an operator token: anyone who reaches it can change cameras; "
            "set VIGIL_OPERATOR_TOKEN (and VIGIL_READ_TOKEN to protect reads)",
            host,
        )
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_config=None,  # keep the logging that the vigil command configured
        log_level=settings.log_level.lower(),
        lifespan="on",
        ws_max_size=MAX_CLIENT_MESSAGE_BYTES,  # the alert feed takes no client data: no large frames buffered
    )
    return 0
