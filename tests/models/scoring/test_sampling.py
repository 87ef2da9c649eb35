"""Which frames reach the detector: the analysis rate, in source time."""

from __future__ import annotations

import numpy as np

from models.scoring.sampling import FpsSampler, sampled_frames


def test_sampler_follows_timestamps_not_frame_counts() -> None:
    for native_fps, expected in ((30, 100), (25, 100), (12, 100), (10, 100), (5, 50)):
        sampler = FpsSampler(10)
        kept = sum(sampler.keep(i / native_fps) for i in range(native_fps * 10))
        assert kept == expected, native_fps
    sampler = FpsSampler(10)
    jittered = [i / 10 + (0.004 if i % 2 else -0.004) for i in range(50)]
    assert all(sampler.keep(t) for t in jittered)
    assert sampler.keep(0.0), "a clock jump back (a loop) restarts sampling"


def test_a_dataset_faster_than_the_analysis_rate_keeps_the_frames_a_camera_would() -> None:
    np.testing.assert_array_equal(sampled_frames(7, 10.0, 10.0), np.arange(7))  # not faster: all
    np.testing.assert_array_equal(sampled_frames(7, 5.0, 10.0), np.arange(7))
    kept = sampled_frames(250, 25.0, 10.0)  # 10 s at 25 frames/s
    assert len(kept) == 100 and kept[0] == 0
    assert set(np.diff(kept).tolist()) == {2, 3}  # 0.08 or 0.12 s apart: 10 a second on average
    assert len(sampled_frames(300, 30.0, 10.0)) == 100
    sampler = FpsSampler(10)
    assert kept.tolist() == [i for i in range(250) if sampler.keep(i / 25)]  # as the ingest samples


def test_a_time_is_counted_in_the_frames_nearest_it_and_at_least_one() -> None:
    from models.scoring.sampling import frames_in

    assert [frames_in(0.3, fps) for fps in (10, 5, 25, 1)] == [3, 2, 8, 1]
    assert frames_in(0.5, 5) == 3  # half a frame rounds up
