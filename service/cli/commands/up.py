"""`vigil up`: everything on one machine under one supervisor."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import redis

from service.cli.commands.common import CommandError, connect_site
from service.cli.main import child_command
from workers.bus.connection import EMBEDDED_REDIS_DIR, EmbeddedRedis
from workers.config import get_settings
from workers.ingest.demo import demo_source
from workers.proc.redaction import redact
from workers.proc.supervisor import Child, Supervisor, child_env
from workers.store import model_registry
from workers.store.cameras import ensure_sources

log = logging.getLogger("vigil")

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "up",
        help="run everything: Redis (embedded unless VIGIL_REDIS_URL is set), ingest, inference, retraining, API",
        description=(
            "Run the whole service on this machine. Without VIGIL_REDIS_URL an embedded Redis keeps its data "
            "(cameras, alerts, models) under the data directory. A crashed process is restarted; Ctrl-C stops all."
        ),
    )
    parser.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="URL_OR_PATH",
        help="add a camera: rtsp:// or http(s):// URL, video file or frame folder (repeatable); its id is the "
        "source's name (file stem, folder or stream path) when valid and free, else cam1, cam2, ...; a source "
        "already configured keeps its camera",
    )
    parser.add_argument(
        "--site",
        type=Path,
        metavar="FILE",
        help="site file (YAML) whose cameras are created or updated at start",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="add a demo camera: a Ped2 test video from ../shared if present, else a generated clip",
    )
    parser.add_argument(
        "--model",
        type=Path,
        help="detector weights (.onnx or .pt) to publish as the site's model when it is new to the site "
        "(self-training then improves it); default: the published model, else a cold start",
    )
    parser.add_argument("--host", help="API address (default: settings api_host)")
    parser.add_argument("--port", type=int, help="API port (default: settings api_port)")
    parser.add_argument("--inference-workers", type=int, default=1, metavar="N", help="inference processes")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    host = args.host or settings.api_host
    port = args.port or settings.api_port
    infer_args = ["infer"]
    if args.model and not args.model.is_file():
        raise CommandError(f"--model {args.model}: no such file")
    embedded = None if settings.redis_url else EmbeddedRedis(settings.data_dir / EMBEDDED_REDIS_DIR).start()
    try:
        redis_url = settings.redis_url or embedded.url  # type: ignore[union-attr]
        if args.demo:  # a demo camera plays on in a loop, like a real one
            demo = demo_source(PROJECT_ROOT, settings.data_dir)
            try:
                ensure_sources(connect_site(redis_url), [demo], loop=True)
            except redis.ConnectionError as exc:
                raise CommandError(f"cannot reach Redis at {redact(redis_url)}: {exc}") from exc
            log.info("demo camera: %s (looping)", demo)
        if args.model:
            _publish_model(redis_url, args.model)
        ingest_args = ["ingest", *(arg for source in args.source for arg in ("--source", source))]
        if args.site:
            ingest_args += ["--site", str(args.site.resolve())]
        children = [
            Child("ingest", child_command(ingest_args)),
            *(
                Child(f"inference-{i + 1}", child_command(infer_args))
                for i in range(max(args.inference_workers, 1))
            ),
            Child("retrain", child_command(["retrain"])),
            Child("api", child_command(["api", "--host", host, "--port", str(port)])),
        ]
        if settings.webhooks.urls:
            children.append(Child("notify", child_command(["notify"])))
        if settings.mqtt.url:
            children.append(Child("mqtt", child_command(["mqtt"])))
        supervisor = Supervisor(children, child_env(redis_url))
        supervisor.install_signal_handlers()
        log.info(
            "Vigil is starting: API on http://%s:%d  (alerts: /api/alerts, docs: /docs). Ctrl-C stops.",
            host,
            port,
        )
        print(
            f"Vigil API: http://{host}:{port}  (alerts: /api/alerts, docs: /docs). Ctrl-C to stop.",
            flush=True,
        )
        return supervisor.run()
    finally:
        if embedded is not None:
            embedded.stop()


def _publish_model(redis_url: str, path: Path) -> None:
    from models.detector.runtime import InvalidModelError

    try:
        version = model_registry.publish_file(connect_site(redis_url), path.resolve(), only_if_new=True)
    except (InvalidModelError, model_registry.RegistryError) as exc:
        raise CommandError(f"--model {path}: {exc}") from exc
    except redis.ConnectionError as exc:
        raise CommandError(f"cannot reach Redis at {redact(redis_url)}: {exc}") from exc
    log.info("model %s published from %s (serving unless self-training moved on)", version.version, path)
