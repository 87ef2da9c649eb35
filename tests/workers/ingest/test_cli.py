"""`vigil cameras` and `vigil ingest` argument handling against a real Redis."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from service.cli.commands import cameras, ingest
from service.cli.commands.common import CommandError
from workers.bus import keys, schemas
from workers.config import get_settings


@pytest.fixture
def vigil(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[argparse.ArgumentParser]:
    """A parser with the two commands, settings pointing at the test Redis."""
    monkeypatch.setenv("VIGIL_REDIS_URL", redis_url)
    get_settings.cache_clear()
    parser = argparse.ArgumentParser(prog="vigil")
    subparsers = parser.add_subparsers(dest="command", required=True)
    cameras.register(subparsers)
    ingest.register(subparsers)
    yield parser
    get_settings.cache_clear()


def call(parser: argparse.ArgumentParser, *argv: str) -> int:
    args = parser.parse_args(argv)
    return args.handler(args)


def test_cameras_add_list_remove(
    vigil: argparse.ArgumentParser,
    redis_client: redis.Redis,
    video_clip: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert call(vigil, "cameras", "add", "door", str(video_clip), "--fps", "5", "--loop") == 0
    assert call(vigil, "cameras", "add", "gate", "rtsp://admin:s3cret@10.0.0.9/live", "--disabled") == 0
    stored = schemas.CameraConfig.model_validate_json(redis_client.hget(keys.CAMERAS, "door"))
    assert stored.fps == 5 and stored.loop and stored.source == str(video_clip)
    capsys.readouterr()
    assert call(vigil, "cameras", "list") == 0
    listing = capsys.readouterr().out
    assert "door" in listing and "rtsp://***@10.0.0.9/live" in listing and "s3cret" not in listing
    assert "disabled" in listing

    with pytest.raises(CommandError, match="exists"):
        call(vigil, "cameras", "add", "door", str(video_clip))
    assert call(vigil, "cameras", "add", "door", str(video_clip), "--replace") == 0
    with pytest.raises(CommandError, match="camera id"):
        call(vigil, "cameras", "add", "bad id!", str(video_clip))
    with pytest.raises(CommandError, match="fps"):
        call(vigil, "cameras", "add", "fast", str(video_clip), "--fps", "500")

    assert call(vigil, "cameras", "remove", "door") == 0
    assert redis_client.hkeys(keys.CAMERAS) == [b"gate"]
    with pytest.raises(CommandError, match="no camera door"):
        call(vigil, "cameras", "remove", "door")


def test_ingest_rejects_a_missing_source(vigil: argparse.ArgumentParser, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="no such file or folder"):
        call(vigil, "ingest", "--source", str(tmp_path / "nowhere.mp4"))


def test_single_parts_need_a_redis_url(
    vigil: argparse.ArgumentParser, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VIGIL_REDIS_URL")
    get_settings.cache_clear()
    with pytest.raises(CommandError, match="VIGIL_REDIS_URL"):
        call(vigil, "cameras", "list")
