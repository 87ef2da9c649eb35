from __future__ import annotations

from pathlib import Path

import pytest
import redis

from tests.conftest import PROJECT_ROOT
from workers.ingest.sources import SourceError, expand_credentials
from workers.store.cameras import SiteFileError, apply_site, list_cameras, load_site_file

EXAMPLE = PROJECT_ROOT / "docker" / "site.example.yml"


def test_example_site_file_loads_with_credentials_left_as_references(redis_client: redis.Redis) -> None:
    cameras = load_site_file(EXAMPLE)
    assert [c.id for c in cameras] == ["lobby", "parking-north", "loading-dock", "replay"]
    assert "${LOBBY_RTSP_PASSWORD}" in cameras[0].source
    apply_site(redis_client, cameras)
    assert {c.id for c in list_cameras(redis_client)} == {c.id for c in cameras}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cameras: [", "not valid YAML"),
        ("cameras:\n  - {id: a, source: x.mp4}\n  - {id: a, source: y.mp4}\n", "listed twice: a"),
        ("cameras:\n  - {id: '-bad', source: x.mp4}\n", "cameras.0.id"),
        ("cameras:\n  - {id: a, source: x.mp4, fps: 500}\n", "cameras.0.fps"),
        ("cams: []\n", "cameras"),
    ],
)
def test_bad_site_files_are_refused_with_the_reason(tmp_path: Path, text: str, message: str) -> None:
    site = tmp_path / "site.yml"
    site.write_text(text)
    with pytest.raises(SiteFileError, match=message.replace(".", r"\.")):
        load_site_file(site)


def test_a_folder_in_place_of_the_site_file_says_how_to_fix_it(tmp_path: Path) -> None:
    with pytest.raises(SiteFileError, match=r"site\.example\.yml"):
        load_site_file(tmp_path)


def test_credentials_come_from_environment_then_secret_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "CAM_PASSWORD").write_text("s3cret\n")
    monkeypatch.setenv("CAM_USER", "viewer")
    source = "rtsp://${CAM_USER}:${CAM_PASSWORD}@192.0.2.1/stream"
    assert expand_credentials(source, tmp_path) == "rtsp://viewer:s3cret@192.0.2.1/stream"
    with pytest.raises(SourceError, match=r"\$\{MISSING\} is not set") as error:
        expand_credentials("rtsp://${MISSING}@192.0.2.1/", tmp_path)
    assert "s3cret" not in str(error.value)
