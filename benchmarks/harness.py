"""What the benchmarks share: how they run `vigil eval` in a fresh process, and where and how they write
their JSON reports (benchmarks/results/, committed for a history)."""

from __future__ import annotations

import datetime as dt
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = PROJECT_ROOT / "benchmarks" / "results"
# `python -c EVAL_RUNNER eval DATASET ...` runs `vigil eval` as the CLI does, without needing the entry point
EVAL_RUNNER = (
    "import argparse, sys; from service.cli.commands import eval as command; "
    "parser = argparse.ArgumentParser(); command.register(parser.add_subparsers()); "
    "args = parser.parse_args(sys.argv[1:]); sys.exit(args.handler(args))"
)


def write_report(results: dict[str, Any], kind: str, out: Path | None = None) -> Path:
    """Stamps `results` with its creation time and writes it to `out`, by default
    benchmarks/results/KIND-MACHINE-DATE.json. Returns the path written."""
    results["created"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    path = out or RESULTS_DIR / f"{kind}-{platform.node() or 'machine'}-{dt.date.today()}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


def write_with_table(results: dict[str, Any], kind: str, out: Path | None, rows: list[str]) -> None:
    """write_report, then the benchmark's table (markdown rows) and where the report went, printed."""
    path = write_report(results, kind, out)
    print("\n".join(rows))
    print(f"\nwritten to {path}")


def run_eval(dataset: Path, work: Path, name: str, *arguments: str) -> dict[str, Any]:
    """`vigil eval` in a fresh process; its JSON report, with the process wall time."""
    report = work / f"{name}.json"
    command = [sys.executable, "-c", EVAL_RUNNER, "eval", str(dataset), "--report", str(report), *arguments]
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=PROJECT_ROOT)
    figures = json.loads(report.read_text())
    figures["process_wall_s"] = time.perf_counter() - started
    return figures
