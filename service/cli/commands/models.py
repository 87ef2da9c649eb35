"""`vigil models list|publish|rollback|cycles`: the detector versions a site has served and trained."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import redis

from service.cli.commands.common import CommandError, connect_site, require_redis_url
from workers.config import get_settings
from workers.store import model_registry


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list model versions, publish a model file, roll back",
        description="Model versions: the one serving, earlier ones, candidates refused by validation. "
        "Inference workers switch to a newly current version between batches.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="every version, newest first")
    publish = actions.add_parser("publish", help="make a detector file (.onnx or .pt) the current model")
    publish.add_argument("path", type=Path)
    rollback = actions.add_parser("rollback", help="serve the previous version again (or --to VERSION)")
    rollback.add_argument("--to", metavar="VERSION", help="the version to serve (default: the one before)")
    cycles = actions.add_parser("cycles", help="the newest retraining cycles")
    cycles.add_argument("-n", type=int, default=10, help="how many (default 10)")
    parser.set_defaults(handler=run)


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _list(client: redis.Redis) -> None:
    versions = model_registry.list_versions(client)
    if not versions:
        print("no model published: inference scores with the motion baseline until one is trained")
        return
    print(f"{'VERSION':<40} {'STATUS':<12} {'ORIGIN':<14} {'CREATED':<19}  PARENT / REASON")
    for v in versions:
        print(f"{v.version:<40} {v.status:<12} {v.origin:<14} {_when(v.created_ts):<19}  {v.parent or '-'}")
        if v.reason and v.status in ("rejected", "rolled_back"):
            print(f"{'':<40} {v.reason}")


def _cycles(client: redis.Redis, count: int) -> None:
    cycles = model_registry.recent_cycles(client, count)
    if not cycles:
        print("no retraining cycle yet")
    for c in cycles:
        verdict = "accepted" if c.accepted else "refused"
        mined = ", ".join(f"{k} {v}" for k, v in c.mined.items()) or "-"
        print(
            f"{_when(c.started_ts)}  {c.seconds:6.1f} s  {c.window_frames:5d} frames  {verdict:<8}  mined: {mined}"
        )
        print(f"{'':<21}{c.reason}")


def run(args: argparse.Namespace) -> int:
    from models.detector.runtime import InvalidModelError

    client = connect_site(require_redis_url(get_settings(), "models"))
    try:
        if args.action == "list":
            _list(client)
        elif args.action == "cycles":
            _cycles(client, args.n)
        elif args.action == "publish":
            version = model_registry.publish_file(client, args.path)
            print(f"now serving {version.version} ({args.path})")
        else:
            old, new = model_registry.rollback(client, args.to)
            print(f"rolled back from {old.version} to {new.version}")
        return 0
    except (model_registry.RegistryError, InvalidModelError) as exc:
        raise CommandError(str(exc)) from exc
    except redis.ConnectionError as exc:
        raise CommandError(f"cannot reach Redis: {exc}") from exc
    finally:
        client.close()
