"""Which frames reach the detector: frames spaced 1/fps apart in source time, the analysis rate.

The ingest worker samples every camera so (workers/ingest), and `vigil eval` samples a dataset whose
footage is faster than the analysis rate the same way (models/evaluation/jobs.py), so that a model is
fitted and scored at the rate the service runs it. The per-frame constants that were chosen at 10 frames/s
are stated as times and counted in frames at each camera's rate (`frames_in`): the flow's gap, the
score's smoothing, the alerts' opening and closing frames.
"""

from __future__ import annotations

import math

import numpy as np

CLOCK_JUMP_S = 10.0  # a source-time step this large restarts the sampling grid


def frames_in(seconds: float, fps: float) -> int:
    """The frames that span `seconds` at `fps`, at least 1 (half a frame rounds up): a per-frame constant
    stated as a time, so that it means the same at every camera's rate."""
    return max(1, math.floor(seconds * fps + 0.5))


class FpsSampler:
    """Keeps frames spaced 1/fps apart in source time (not every n-th frame: native rates vary and drift)."""

    def __init__(self, fps: float) -> None:
        self.period_s = 1.0 / fps
        self.next_due_s: float | None = None

    def keep(self, time_s: float) -> bool:
        due = self.next_due_s
        if due is None or time_s < due - 2 * self.period_s or time_s > due + CLOCK_JUMP_S:
            due = time_s  # first frame, or the source clock jumped (loop, stream reset)
        # a little early still counts: frames at exactly `fps` with timestamp jitter are all kept
        if time_s < due - 0.2 * self.period_s:
            self.next_due_s = due
            return False
        due += self.period_s
        self.next_due_s = due if due > time_s else time_s + self.period_s  # a slower source: no bursts later
        return True


def sampled_frames(count: int, footage_fps: float, analysis_fps: float) -> np.ndarray:
    """int [K]: the frames of a video of `count` frames at `footage_fps` that a camera sampled at
    `analysis_fps` keeps (all of them where the footage is not faster)."""
    if footage_fps <= analysis_fps:
        return np.arange(count)
    sampler = FpsSampler(analysis_fps)
    return np.array([i for i in range(count) if sampler.keep(i / footage_fps)], dtype=np.int64)
