"""Reading datasets: the size of the footage as stored."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from models.evaluation.datasets import DatasetError, list_videos, source_size
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
