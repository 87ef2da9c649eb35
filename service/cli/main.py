"""`vigil`: the one command-line entry point. Each subcommand lives in service/cli/commands/<name>.py,
which exposes `register(subparsers)`; the parser it adds sets `handler(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from pydantic import ValidationError

from service.cli.commands.common import CommandError
from workers.config import CONFIG_ENV
from workers.proc.redaction import RedactingFilter

# Order is the order `vigil --help` lists them in.
COMMANDS = (
    "up",
    "ingest",
    "infer",
    "retrain",
    "api",
    "notify",
    "mqtt",
    "train",
    "eval",
    "cameras",
    "labels",
    "models",
)

log = logging.getLogger("vigil")


def command_named(argv: list[str]) -> str | None:
    """The subcommand `argv` runs, if it names one (the options before it take a value each)."""
    values_follow = {"--config", "--log-level"}
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in values_follow:
            skip = True
        elif not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The `vigil` parser; with `only`, just that subcommand is registered, so a worker process imports the
    modules it runs and not, say, PyTorch for training (faster restarts, less memory per process)."""
    parser = argparse.ArgumentParser(
        prog="vigil",
        description=(
            "Vigil: real-time video anomaly detection for camera sites. "
            "`vigil up` runs everything (embedded Redis, ingest, inference, retraining, API) on one machine; "
            "the other commands run one part each, or train and evaluate detectors."
        ),
        epilog="Settings come from VIGIL_* environment variables and an optional YAML/TOML file (--config).",
    )
    parser.add_argument(
        "--config", metavar="FILE", help=f"settings file (YAML or TOML); same as {CONFIG_ENV}"
    )
    parser.add_argument(
        "--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"), help="override VIGIL_LOG_LEVEL"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS if only is None else (only,):
        importlib.import_module(f"{__package__}.commands.{name}").register(subparsers)
    return parser


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(only=command_named(argv)).parse_args(argv)
    if args.config:
        os.environ[CONFIG_ENV] = args.config
    if args.log_level:
        os.environ["VIGIL_LOG_LEVEL"] = args.log_level
    from workers.config import get_settings

    try:
        settings = get_settings()
    except (ValidationError, ValueError) as exc:
        print(f"vigil: invalid settings: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    try:
        return int(args.handler(args) or 0)
    except CommandError as exc:
        print(f"vigil {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def child_command(args: list[str]) -> list[str]:
    """The command line of a `vigil ARGS` child process (`vigil up` starts its parts so): this interpreter
    running this entry point, whatever the environment's PATH holds."""
    return [sys.executable, "-m", __package__, *args]
