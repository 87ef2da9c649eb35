"""`vigil cameras list|add|remove`: the camera registry in Redis (the ingest worker follows it live)."""

from __future__ import annotations

import argparse

import redis
from pydantic import ValidationError

from service.cli.commands.common import CommandError, connect_site, require_redis_url
from workers.bus import schemas
from workers.config import get_settings
from workers.proc.redaction import redact
from workers.store.cameras import (
    add_camera,
    camera_statuses,
    list_cameras,
    put_camera,
    remove_camera,
    validation_problems,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cameras",
        help="list, add or remove cameras",
        description="Manage the cameras Vigil watches; running workers pick changes up within a second.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="cameras with their live state")
    add = actions.add_parser("add", help="add a camera (or replace one with --replace)")
    add.add_argument("id", help="camera id: letters, digits, '_', '-', '.'")
    add.add_argument("source", help="rtsp:// or http(s):// URL, a video file, or a folder of frames")
    add.add_argument("--fps", type=float, help="analysis fps (default: settings)")
    add.add_argument("--width", type=int, help="analysis width (default: settings)")
    add.add_argument("--height", type=int, help="analysis height (default: settings)")
    add.add_argument("--loop", action="store_true", help="files and folders: start again at the end")
    add.add_argument("--disabled", action="store_true", help="register it without streaming yet")
    add.add_argument("--replace", action="store_true", help="replace an existing camera with this id")
    remove = actions.add_parser("remove", help="remove a camera")
    remove.add_argument("id")
    parser.set_defaults(handler=run)


def _list(client: redis.Redis) -> int:
    cameras = list_cameras(client)
    if not cameras:
        print("no cameras (add one with `vigil cameras add ID SOURCE`)")
        return 0
    statuses = camera_statuses(client)
    print(f"{'ID':<16} {'STATE':<13} {'FPS':>5} {'FRAMES':>8}  SOURCE / MESSAGE")
    for camera in cameras:
        status = statuses.get(camera.id)
        state = status.state if status else ("disabled" if not camera.enabled else "unknown")
        fps = f"{status.fps:.1f}" if status else "-"
        frames = str(status.frames) if status else "-"
        print(f"{camera.id:<16} {state:<13} {fps:>5} {frames:>8}  {redact(camera.source)}")
        if status and status.message and status.state in ("error", "reconnecting"):
            print(f"{'':<46}{status.message}")
    return 0


def _add(client: redis.Redis, args: argparse.Namespace) -> int:
    try:
        config = schemas.CameraConfig(
            id=args.id,
            source=args.source,
            fps=args.fps,
            width=args.width,
            height=args.height,
            loop=args.loop,
            enabled=not args.disabled,
        )
    except ValidationError as exc:
        raise CommandError(f"invalid camera: {validation_problems(exc)}") from exc
    if args.replace:
        put_camera(client, config)
    elif not add_camera(client, config):
        raise CommandError(f"camera {config.id} exists (use --replace to change it)")
    print(f"camera {config.id}: {redact(config.source)}")
    return 0


def run(args: argparse.Namespace) -> int:
    client = connect_site(require_redis_url(get_settings(), "cameras"))
    try:
        if args.action == "list":
            return _list(client)
        if args.action == "add":
            return _add(client, args)
        if not remove_camera(client, args.id):
            raise CommandError(f"no camera {args.id}")
        print(f"camera {args.id} removed")
        return 0
    except redis.ConnectionError as exc:
        raise CommandError(f"cannot reach Redis: {exc}") from exc
    finally:
        client.close()
