"""`vigil eval --mode online|coldstart`: a dataset streamed exactly as the inference worker scores cameras,
through the retraining worker's `SelfTrainer` (models/selftrain/trainer.py): the same cycle code."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.detector.base import Detector
from models.evaluation.videos import VideoScores, served_raw
from models.scoring.camera import CameraStream, ScorerConfig
from models.selftrain.config import Window
from models.selftrain.cycle import CycleResult
from models.selftrain.trainer import ProgressCallback, SelfTrainer

log = logging.getLogger(__name__)


@dataclass
class _Seen:
    """The newest frames of an online stream (enough for a window), with where each came from and, where
    the stream names them, the camera that filmed each."""

    frames: list[np.ndarray] = field(default_factory=list)
    segments: list[np.ndarray] = field(default_factory=list)
    ids: list[tuple[str, int]] = field(default_factory=list)  # (video, frame index)
    cameras: list[str | None] = field(default_factory=list)

    def add(
        self, frames: np.ndarray, segment: int, video: str, first: int, keep: int, camera: str | None = None
    ) -> None:
        self.frames.append(frames)
        self.segments.append(np.full(len(frames), segment))
        self.ids += [(video, first + i) for i in range(len(frames))]
        self.cameras += [camera] * len(frames)
        if len(self.ids) > 2 * keep:  # keep only what a window needs
            window = self.window(keep)
            self.frames, self.segments = [window.frames], [window.segments]
            self.ids, self.cameras = self.ids[-keep:], self.cameras[-keep:]

    def __len__(self) -> int:
        return len(self.ids)

    def window(self, count: int) -> Window:
        """The newest `count` frames as the retraining worker reads a site's cameras: each frame named by
        its camera where the stream names them (the model scores, refits and validates it in that
        camera's view), else one unnamed camera's."""
        frames, segments = np.concatenate(self.frames)[-count:], np.concatenate(self.segments)[-count:]
        cameras = self.cameras[-len(frames) :]
        if all(camera is None for camera in cameras):
            return Window(frames=frames, segments=segments)
        names = tuple(dict.fromkeys(str(camera) for camera in cameras))
        codes = {name: index for index, name in enumerate(names)}
        return Window(
            frames=frames,
            segments=segments,
            cameras=np.array([codes[str(camera)] for camera in cameras], dtype=np.int64),
            camera_names=names,
        )


def check_cameras(videos: Iterable[str], cameras: dict[str, str]) -> None:
    """Raises ValueError unless `cameras` names the camera of every video streamed, or of none: a stream
    scores each video as its camera, and a window that joins cameras names every frame's."""
    unnamed = [video for video in videos if video not in cameras]
    if cameras and unnamed:
        raise ValueError(
            f"the cameras file names {len(cameras)} of the videos streamed but not {len(unnamed)} others "
            f"(e.g. {unnamed[0]!r}): name every video's camera, or none"
        )


def _log_entry(result: CycleResult, after_frames: int, **extra: Any) -> dict[str, Any]:
    """A cycle's (or a check's) entry in the online log: its verdict, its report, and `extra`."""
    return {
        "after_frames": after_frames,
        "accepted": result.accepted,
        "reason": result.reason,
        **result.report,
        **extra,
    }


def stream_online(
    videos: dict[str, np.ndarray],
    trainer: SelfTrainer,
    fallback: Detector,
    cycle_log: list[dict[str, Any]],
    progress: ProgressCallback | None = None,
    batch_size: int = 32,
    *,
    fps: float,
    cameras: dict[str, str] | None = None,
) -> dict[str, VideoScores]:
    """Streams `videos` (`fps` frames a second) one after another, each as a camera, through the service's
    scoring and the self-training loop: a cycle after every `cycle_frames` new frames over the newest
    `window_frames`, and between cycles the check of a view that moved (`view_check_frames`), an accepted
    model swapped in between batches (the camera's statistics carried to it, history refilled), as the
    workers do. `cameras` names the camera that filmed each video (every video, or none): each is then
    scored, and its frames mined, refitted and validated, in that camera's own view where the model keeps
    one, as the workers score and retrain a site's cameras.

    Until the trainer has a model, frames are scored by `fallback` (the service's motion baseline) and a
    first model is trained once `coldstart_frames` have been seen. Returns the scores as streamed; each
    cycle's entry in `cycle_log` names the frames it mined ("mined_frames": video and frame index), for a
    benchmark to check against labels (the loop itself never sees any).
    """
    config = trainer.config
    cameras = cameras or {}
    check_cameras(videos, cameras)
    seen = _Seen()
    since_cycle = since_check = 0
    out: dict[str, VideoScores] = {}
    for index, (name, frames) in enumerate(videos.items()):
        detector, camera = trainer.serving or fallback, cameras.get(name)
        stream = CameraStream(detector.info.for_camera(camera), ScorerConfig().at_rate(fps))
        raw = np.empty(len(frames), dtype=np.float32)
        scores = np.empty(len(frames), dtype=np.float32)
        for start in range(0, len(frames), batch_size):
            chunk = frames[start : start + batch_size]
            clips = np.stack([stream.push(frame) for frame in chunk])
            raw[start : start + len(chunk)] = served_raw(detector, clips, camera)
            for i in range(start, start + len(chunk)):
                scores[i] = stream.score(float(raw[i]))
            seen.add(chunk, index, name, start, config.window_frames, camera)
            since_cycle += len(chunk)
            since_check += len(chunk)
            if progress is not None:
                progress(len(chunk))
            due = config.coldstart_frames if trainer.model is None else config.cycle_frames
            result = None
            if (len(seen) if trainer.model is None else since_cycle) >= due:
                window = seen.window(config.window_frames)
                ids = seen.ids[-len(window) :]
                if trainer.model is None:
                    result = trainer.cold_start(window, config.detector, fallback)
                else:
                    result = trainer.cycle(window)
                since_cycle = since_check = 0
                mined = {
                    kind: [list(ids[i]) for i in np.flatnonzero(flags)]
                    for kind, flags in (("normal", result.mined_normal), ("abnormal", result.mined_abnormal))
                    if flags is not None
                }
                cycle_log.append(_log_entry(result, len(seen), mined_frames=mined))
            elif trainer.model is not None and 0 < config.view_check_frames <= since_check:
                since_check = 0
                result = trainer.check_view(seen.window(config.view_check_frames))
                if result is not None:
                    cycle_log.append(_log_entry(result, len(seen), view_check=True))
            if result is not None and result.accepted and trainer.serving is not None:
                # swap: the camera's statistics carried to the new model; history refilled from the stream
                detector = trainer.serving
                stream = stream.carried_to(detector.info.for_camera(camera))
                for past in frames[max(0, start + len(chunk) - detector.info.history) : start + len(chunk)]:
                    stream.push(past)
        out[name] = VideoScores(raw=raw, scores=scores)
    return out
