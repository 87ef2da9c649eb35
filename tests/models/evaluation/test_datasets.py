"""Reading datasets: the size of the footage as stored, and long footage read as runs within a budget."""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest

from models.evaluation.datasets import (
    DatasetError,
    evenly_spread_runs,
    frame_count,
    list_videos,
    read_frames,
    read_video,
    source_size,
)
from workers.ingest.clips import write_clip


def test_source_size_is_the_smallest_first_frame_of_folders_and_recordings(tmp_path: Path) -> None:
    split = tmp_path / "dataset" / "training"
    (split / "01").mkdir(parents=True)
    cv2.imwrite(str(split / "01" / "000.png"), np.zeros((120, 200), np.uint8))
    write_clip(split / "02.mkv", np.zeros((5, 96, 240), np.uint8), fps=10)
    videos = list_videos(tmp_path / "dataset", "training")
    assert source_size(videos[:1]) == (120, 200)
    assert source_size(videos[1:]) == (96, 240)
    assert source_size(videos) == (96, 200)


def test_source_size_of_an_unreadable_recording_is_a_clear_error(tmp_path: Path) -> None:
    split = tmp_path / "dataset" / "training"
    split.mkdir(parents=True)
    (split / "01.mp4").write_bytes(b"not a video")
    with pytest.raises(DatasetError, match="not a readable video"):
        source_size(list_videos(tmp_path / "dataset", "training"))


def test_footage_within_the_budget_is_kept_whole() -> None:
    assert evenly_spread_runs({"01": 120, "02": 80, "03": 0}, budget=200, run=50) == {
        "01": [(0, 120)],
        "02": [(0, 80)],
    }


def test_longer_footage_keeps_runs_in_proportion_spread_over_each_video() -> None:
    runs = evenly_spread_runs({"long": 3000, "short": 1000}, budget=400, run=100)
    kept = {name: sum(end - start for start, end in parts) for name, parts in runs.items()}
    assert kept == {"long": 300, "short": 100}
    assert runs["long"] == [(0, 100), (1450, 1550), (2900, 3000)]  # first, middle and last frames
    assert runs["short"] == [(450, 550)]  # one run: the middle of the video
    for parts in runs.values():
        assert all(end - start <= 100 for start, end in parts)


def test_runs_split_a_share_into_near_equal_pieces_without_overlap() -> None:
    (runs,) = evenly_spread_runs({"01": 1000}, budget=250, run=100).values()
    assert [end - start for start, end in runs] == [84, 83, 83]
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(runs))
    assert runs[-1][1] == 1000
    with pytest.raises(ValueError, match="positive"):
        evenly_spread_runs({"01": 10}, budget=0, run=5)


def test_frames_of_folders_and_recordings_are_those_read_whole(tmp_path: Path) -> None:
    split = tmp_path / "dataset" / "training"
    frames = np.stack([np.full((48, 64), 10 * i, np.uint8) for i in range(20)])
    (split / "01").mkdir(parents=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(split / "01" / f"{i:03d}.png"), frame)
    write_clip(split / "02.mkv", frames, fps=10)
    folder, recording = list_videos(tmp_path / "dataset", "training")
    for video in (folder, recording):
        assert frame_count(video) == 20
        whole = read_video(video, 48, 64)
        np.testing.assert_array_equal(
            read_frames(video, np.array([2, 3, 4, 15]), 48, 64), whole[[2, 3, 4, 15]]
        )
        assert (
            len(read_frames(video, np.array([18, 19, 20, 25]), 48, 64)) == 2
        )  # past the last frame: left out
        assert read_frames(video, np.array([], int), 48, 64).shape == (0, 48, 64)
