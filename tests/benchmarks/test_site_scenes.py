"""The site of two scenes: its joined dataset (each video's camera its scene, as a live replay streams it), and
the share of normal frames an alert covers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.bench_site_scenes import joined_site, normal_under_alert
from benchmarks.live_cameras import camera_videos
from models.evaluation.datasets import video_cameras


def scene(root: Path, name: str, abnormal: list[list[int]]) -> Path:
    """A dataset of one training and one testing video of 10 frames (empty frame files)."""
    dataset = root / name
    for split in ("training", "testing"):
        (dataset / split / "01").mkdir(parents=True)
        for index in range(10):
            (dataset / split / "01" / f"{index:03d}.jpg").touch()
    labels = {"videos": {"01": {"frames": 10, "abnormal": abnormal}}}
    (dataset / "labels.json").write_text(json.dumps(labels))
    return dataset


def test_the_joined_site_links_every_scene_s_videos_with_their_labels(tmp_path: Path) -> None:
    first, second = scene(tmp_path, "north", [[2, 4]]), scene(tmp_path, "south", [])
    site = joined_site([first, second], tmp_path / "site")
    assert sorted(p.name for p in (site / "testing").iterdir()) == ["north-01", "south-01"]
    assert (site / "training" / "south-01").resolve() == (second / "training" / "01").resolve()
    labels = json.loads((site / "labels.json").read_text())["videos"]
    assert labels == {
        "north-01": {"frames": 10, "abnormal": [[2, 4]]},
        "south-01": {"frames": 10, "abnormal": []},
    }
    # each video's camera is its scene: a fit learns each one's view, a live replay streams it as that camera
    assert video_cameras(site) == {"north-01": "north", "south-01": "south"}
    assert camera_videos(site, ["north-01", "south-01"]) == {"north": ["north-01"], "south": ["south-01"]}
    with pytest.raises(ValueError, match="names no camera for test videos east-01"):
        camera_videos(site, ["east-01", "north-01"])


def test_normal_frames_under_an_alert_are_counted_once(tmp_path: Path) -> None:
    dataset = scene(tmp_path, "north", [[2, 4]])
    alerts = tmp_path / "alerts.csv"
    # frames 3-6 and 6-7: normal 5, 6 and 7 (6 twice) of the 7 normal frames
    alerts.write_text("video,start_frame,end_frame,peak_score\n01,3,6,0.9\n01,6,7,0.5\n")
    assert normal_under_alert(dataset, alerts) == pytest.approx(3 / 7)
