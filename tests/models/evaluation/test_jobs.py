"""Scores of footage analysed at a lower rate than it was recorded at, spread back over every frame."""

from __future__ import annotations

import numpy as np

from models.evaluation.jobs import Split, every_frame
from models.evaluation.videos import VideoScores


def test_a_frame_that_was_not_analysed_holds_the_score_before_it() -> None:
    analysed = np.array([0, 2, 5, 7])  # of 9 frames
    split = Split([], {"01": np.zeros((4, 2, 2), np.uint8)}, {"01": analysed}, 10.0, {"01": "01"}, {"01": 9})
    scores = {"01": VideoScores(raw=np.array([1.0, 2.0, 3.0, 4.0]), scores=np.array([0.1, 0.2, 0.3, 0.4]))}
    held = every_frame(split, scores)["01"]
    assert held.scores.tolist() == [0.1, 0.1, 0.2, 0.2, 0.2, 0.3, 0.3, 0.4, 0.4]
    assert held.raw.tolist() == [1.0, 1.0, 2.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0]
    every = Split([], {"01": np.zeros((4, 2, 2), np.uint8)}, None, 10.0)
    assert every_frame(every, scores) is scores  # every frame analysed: as they are
