"""`vigil retrain`: the retraining worker."""

from __future__ import annotations

import argparse

from service.cli.commands.common import require_redis_url
from workers.config import get_settings
from workers.retrain.worker import RetrainWorker, yield_cpu_to_inference


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "retrain",
        help="run the retraining worker",
        description=(
            "Mine confidently normal and abnormal runs from the cameras' buffered frames, fine-tune the "
            "detector with a masked loss, validate it against the model in service and publish it; a site "
            "with no model trains a first one from its own frames. Settings: VIGIL_RETRAIN__*."
        ),
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    yield_cpu_to_inference(settings)
    return RetrainWorker(settings, require_redis_url(settings, "retrain")).run()
