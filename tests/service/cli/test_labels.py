"""`vigil labels list|export` against a real Redis, through the `vigil` parser."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from service.cli.commands.common import CommandError
from service.cli.main import COMMANDS, build_parser, command_named
from workers.bus import keys, schemas
from workers.config import get_settings
from workers.store import labels
from workers.store.labels import FeedbackRequest


def vigil(*argv: str) -> int:
    """Run `vigil ARGV` as the entry point does, short of its logging set-up."""
    args = build_parser(only=command_named(list(argv))).parse_args(argv)
    return args.handler(args)


@pytest.fixture
def labelled(redis_url: str, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Three labels on two cameras, settings pointing at the test Redis."""
    monkeypatch.setenv("VIGIL_REDIS_URL", redis_url)
    get_settings.cache_clear()
    for camera in ("door", "gate"):
        config = schemas.CameraConfig(id=camera, source="test://frames")
        redis_client.hset(keys.CAMERAS, camera, config.model_dump_json())
    for camera, start, verdict, category in (
        ("door", 10, "abnormal", "cyclist"),
        ("gate", 0, "normal", None),
        ("door", 12, "normal", None),
    ):
        request = FeedbackRequest(
            camera=camera, start_seq=start, end_seq=start + 5, label=verdict, category=category, note="a, b"
        )
        labels.add_label(redis_client, request)
    yield
    get_settings.cache_clear()


def test_export_jsonl_to_stdout(labelled: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert vigil("labels", "export") == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(row["id"], row["camera"], row["label"]) for row in rows] == [
        ("1", "door", "abnormal"),
        ("2", "gate", "normal"),
        ("3", "door", "normal"),
    ]  # oldest first: a later row wins where ranges overlap
    assert rows[0]["category"] == "cyclist" and rows[0]["end_seq"] == 15


def test_export_csv_of_one_camera_to_a_file(
    labelled: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "labels.csv"
    assert vigil("labels", "export", "--camera", "door", "--format", "csv", "--out", str(out)) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "2 labels written to" in captured.err
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [(row["id"], row["start_seq"], row["end_seq"], row["category"]) for row in rows] == [
        ("1", "10", "15", "cyclist"),
        ("3", "12", "17", ""),
    ]
    assert rows[0]["note"] == "a, b"
    assert list(rows[0]) == list(schemas.FeedbackLabel.model_fields)


def test_list_and_errors(labelled: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert vigil("labels", "list", "--label", "normal") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["ID", "CAMERA", "FRAMES", "LABEL"]
    assert [line.split()[:4] for line in lines[1:]] == [
        ["3", "door", "12-17", "normal"],
        ["2", "gate", "0-5", "normal"],
    ]
    assert vigil("labels", "list", "--camera", "yard") == 0
    assert capsys.readouterr().out.startswith("no labels")

    assert "labels" in COMMANDS
    with pytest.raises(CommandError, match="invalid camera id"):
        vigil("labels", "export", "--camera", "bad id!")
    with pytest.raises(CommandError, match="cannot write"):
        vigil("labels", "export", "--out", str(tmp_path / "missing" / "labels.jsonl"))
