"""`vigil ingest`: the ingest worker (decodes every configured camera into Redis)."""

from __future__ import annotations

import argparse
from pathlib import Path

import redis

from service.cli.commands.common import CommandError, connect_site, require_redis_url
from workers.config import get_settings
from workers.ingest.sources import is_live
from workers.ingest.worker import IngestWorker
from workers.store.cameras import SiteFileError, apply_site, ensure_sources, load_site_file


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ingest",
        help="run the ingest worker",
        description=(
            "Decode every enabled camera (RTSP/HTTP streams, video files, folders of frames), sample it to "
            "the analysis fps and write grayscale analysis frames and display JPEGs to Redis. Cameras added, "
            "changed or removed at run time are picked up within a second; lost streams reconnect."
        ),
    )
    parser.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="URL_OR_PATH",
        help="add a camera for this source unless one exists (repeatable): rtsp://..., a video file, a frame folder",
    )
    parser.add_argument(
        "--site",
        type=Path,
        metavar="FILE",
        help="site file (YAML, `cameras:` list): its cameras are created or updated at start",
    )
    parser.add_argument("--fps", type=float, help="analysis fps of cameras added with --source")
    parser.add_argument(
        "--loop", action="store_true", help="files and folders added with --source start again"
    )
    parser.add_argument(
        "--fast",
        action="store_true",
        help="read files and folders as fast as possible instead of in real time",
    )
    parser.set_defaults(handler=run)


def _normalized_source(source: str) -> str:
    """Local paths become absolute (the worker may run elsewhere); they must exist."""
    if is_live(source):
        return source
    path = Path(source).expanduser()
    if not path.exists():
        raise CommandError(f"--source {source}: no such file or folder")
    return str(path.resolve())


def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    redis_url = require_redis_url(settings, "ingest")
    sources = [_normalized_source(source) for source in args.source]
    if args.fps is not None and not 0 < args.fps <= 60:
        raise CommandError("--fps must be in (0, 60]")
    try:
        site_cameras = load_site_file(args.site) if args.site else []
    except SiteFileError as exc:
        raise CommandError(str(exc)) from exc
    if sources or site_cameras:
        client = connect_site(redis_url)
        try:
            apply_site(client, site_cameras)
            ensure_sources(client, sources, fps=args.fps, loop=args.loop)
        except redis.ConnectionError as exc:
            raise CommandError(f"cannot reach Redis: {exc}") from exc
        finally:
            client.close()
    return IngestWorker(settings, redis_url, realtime=not args.fast).run()
