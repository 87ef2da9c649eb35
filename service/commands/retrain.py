"""`vigil retrain`: the retraining worker."""

from __future__ import annotations

import argparse

from service.commands.common import require_redis_url
from workers.retrain import RetrainWorker
from workers.settings import get_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "retrain",
        help="run the retraining worker",
        description=(
            "Mine confidently normal and abnormal runs from the buffered stream, fine-tune the detector and "
            "publish validated versions. In this version it reports itself idle."
        ),
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    return RetrainWorker(settings, require_redis_url(settings, "retrain")).run()
