"""`vigil labels list|export`: the operators' feedback labels (normal / abnormal frame ranges) in Redis."""

from __future__ import annotations

import argparse
import csv
import re
import sys
from contextlib import nullcontext
from datetime import datetime
from pathlib import Path
from typing import TextIO

import redis

from service.cli.commands.common import CommandError, connect_site, require_redis_url
from workers.bus.schemas import CAMERA_ID_PATTERN, FeedbackLabel
from workers.config import get_settings
from workers.store.labels import list_labels

PAGE = 500
EXPORT_FIELDS = tuple(FeedbackLabel.model_fields)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "labels",
        help="list or export the operators' feedback labels",
        description=(
            "Feedback labels say whether ranges of a camera's frames are normal or abnormal; "
            "where labels overlap, the later one (larger id) is the verdict."
        ),
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="the newest labels")
    export = actions.add_parser("export", help="every label, oldest first, as JSON lines or CSV")
    for action in (listing, export):
        action.add_argument("--camera", help="only this camera's labels")
    listing.add_argument("--label", choices=("normal", "abnormal"), help="only this verdict")
    listing.add_argument("--limit", type=int, default=50, help="most labels shown (default 50)")
    export.add_argument("--format", choices=("jsonl", "csv"), default="jsonl", help="default: jsonl")
    export.add_argument("--out", type=Path, metavar="FILE", help="write here instead of standard output")
    parser.set_defaults(handler=run)


def _list(client: redis.Redis, args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise CommandError("--limit must be at least 1")
    found = list_labels(client, limit=min(args.limit, PAGE), camera=args.camera, label=args.label).labels
    if not found:
        print("no labels (operators label alerts in the console, or POST /api/feedback)")
        return 0
    print(f"{'ID':>6} {'CAMERA':<16} {'FRAMES':<17} {'LABEL':<8} {'CREATED':<19}  CATEGORY / ALERT / NOTE")
    for label in found:
        frames = f"{label.start_seq}-{label.end_seq}"
        created = datetime.fromtimestamp(label.created_ts).strftime("%Y-%m-%d %H:%M:%S")
        extra = " / ".join(
            part
            for part in (label.category, label.alert_id and f"alert {label.alert_id}", label.note)
            if part
        )
        print(f"{label.id:>6} {label.camera:<16} {frames:<17} {label.label:<8} {created:<19}  {extra}")
    return 0


def _every_label(client: redis.Redis, camera: str | None) -> list[FeedbackLabel]:
    """Every label (of `camera` when given), oldest first."""
    found: list[FeedbackLabel] = []
    before = None
    while True:
        page = list_labels(client, limit=PAGE, camera=camera, before=before)
        found += page.labels
        if page.next_before is None:
            return found[::-1]
        before = page.next_before


def _write(found: list[FeedbackLabel], output_format: str, out: TextIO) -> None:
    if output_format == "jsonl":
        for label in found:
            out.write(label.model_dump_json() + "\n")
        return
    writer = csv.DictWriter(out, fieldnames=EXPORT_FIELDS)
    writer.writeheader()
    for label in found:
        writer.writerow(label.model_dump())


def _export(client: redis.Redis, args: argparse.Namespace) -> int:
    found = _every_label(client, args.camera)
    try:
        with args.out.open("w", newline="") if args.out else nullcontext(sys.stdout) as out:
            _write(found, args.format, out)
    except OSError as exc:
        raise CommandError(f"cannot write {args.out}: {exc.strerror or exc}") from exc
    if args.out:
        print(f"{len(found)} labels written to {args.out}", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.camera is not None and not re.fullmatch(CAMERA_ID_PATTERN, args.camera):
        raise CommandError(f"invalid camera id {args.camera!r}")
    client = connect_site(require_redis_url(get_settings(), "labels"))
    try:
        return _list(client, args) if args.action == "list" else _export(client, args)
    except redis.ConnectionError as exc:
        raise CommandError(f"cannot reach Redis: {exc}") from exc
    finally:
        client.close()
